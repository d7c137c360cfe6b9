"""The shim's function table (functions.h) read from C, and the Python view generated from it.

functions.h is the one declaration of every hooked function. The recorder and analysis read its
Python view, recording/cuda_functions.py (analysis never imports shim/), whose rows this module
writes: `python -m uvmtrace.shim.functions` after editing the table (`--check`: exit 1 if the
view is stale). The table is read by compiling the header with the system C compiler, the way
the shim itself is built, so what Python sees is what the C preprocessor sees.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from uvmtrace.recording import cuda_functions
from uvmtrace.recording.cuda_functions import CudaFunction
from uvmtrace.shim.build import find_compiler

HEADER = Path(__file__).resolve().parent / "functions.h"
VIEW = Path(cuda_functions.__file__)
BEGIN = "# BEGIN generated from shim/functions.h by `python -m uvmtrace.shim.functions`\n"
END = "# END generated\n"

_PRINT_ROWS = r"""
#include <stdio.h>
#include "functions.h"
#define ROW(id, name, lib, kind, memory, bytes, flags, aux, record, variants) \
    printf("%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", id, #name, #lib, #kind, #memory, bytes, \
           flags, #aux, #variants);
int main(void)
{
    UVMSHIM_FUNCTIONS(ROW)
    return 0;
}
"""


@dataclass(frozen=True)
class Variant:
    """One ABI of a function, as functions.h declares it."""

    abi: int
    params: str
    since: int
    until: int
    exports: tuple[str, ...]


@dataclass(frozen=True)
class TableRow:
    function: CudaFunction
    variants: tuple[Variant, ...]


def read_table() -> list[TableRow]:
    """Every row of functions.h, through the C compiler."""
    cc = find_compiler()
    with tempfile.TemporaryDirectory(prefix="uvmtrace-functions-") as tmp:
        src, exe = Path(tmp) / "rows.c", Path(tmp) / "rows"
        src.write_text(_PRINT_ROWS)
        subprocess.run([cc, f"-I{HEADER.parent}", "-o", str(exe), str(src)], check=True)
        out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        fid, name, lib, kind, memory, nbytes, flags, aux, variants = line.split("\t")
        function = CudaFunction(
            int(fid),
            name,
            lib,
            kind,
            None if memory == "none" else memory,
            nbytes == "1",
            flags == "1",
            None if aux == "none" else aux,
        )
        rows.append(TableRow(function, tuple(_variant(v) for v in _items(variants))))
    return rows


def _items(text: str) -> list[str]:
    """'(x, (y, z), w)' -> ['x', '(y, z)', 'w']: the top-level items of a parenthesized list."""
    text = text.strip()
    assert text[0] == "(" and text[-1] == ")", text
    items, depth, start = [], 0, 1
    for i, ch in enumerate(text[1:-1], start=1):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:-1].strip())
    return items


def _variant(text: str) -> Variant:
    abi, params, _args, since, until, exports = _items(text)
    return Variant(int(abi), params, int(since), int(until), tuple(_items(exports)))


def render(rows: list[TableRow]) -> str:
    """The generated block of recording/cuda_functions.py (formatted as ruff formats it)."""
    lines = [BEGIN, "FUNCTIONS: tuple[CudaFunction, ...] = (\n"]
    for row in rows:
        values = ", ".join(f'"{v}"' if isinstance(v, str) else repr(v) for v in row.function)
        line = f"    CudaFunction({values}),\n"
        if len(line) > 101:  # 100 columns: wrapped as ruff wraps it
            line = f"    CudaFunction(\n        {values}\n    ),\n"
        lines.append(line)
    return "".join([*lines, ")\n", END])


def _with_block(text: str, block: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + block + tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write recording/cuda_functions.py from functions.h")
    ap.add_argument("--check", action="store_true", help="exit 1 if the view is not up to date")
    args = ap.parse_args(argv)
    text = VIEW.read_text()
    new = _with_block(text, render(read_table()))
    if new == text:
        return 0
    if args.check:
        print(f"{VIEW} is stale: run python -m uvmtrace.shim.functions", file=sys.stderr)
        return 1
    VIEW.write_text(new)
    print(f"wrote {VIEW}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
