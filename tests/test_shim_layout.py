"""uvmshim.h and the decoder's numpy dtypes describe the same bytes (compiled and compared); the
function ids: tests/test_shim_functions.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from uvmtrace.shim import file_layout as layout

SHIM = Path(__file__).resolve().parent.parent / "shim"


def _c_layout(tmp_path: Path) -> dict[str, int]:
    fields = {
        "uvmshim_header": layout.HEADER_DTYPE.names,
        "uvmshim_record": layout.RECORD_DTYPE.names,
    }
    lines = []
    for struct, names in fields.items():
        lines.append(f'printf("{struct} %zu\\n", sizeof(struct {struct}));')
        for name in names:
            lines.append(
                f'printf("{struct}.{name} %zu %zu\\n", offsetof(struct {struct}, {name}), '
                f"sizeof(((struct {struct} *)0)->{name}));"
            )
    consts = ("MAGIC", "VERSION", "HEADER_SIZE", "RECORD_SIZE", "CHUNK_RECORDS", "DUR_US")
    lines += [f'printf("{c} %llu\\n", (unsigned long long)UVMSHIM_{c});' for c in consts]
    src = tmp_path / "layout.c"
    src.write_text(
        '#include <stddef.h>\n#include <stdio.h>\n#include "uvmshim.h"\nint main(void) {\n'
        + "\n".join(lines)
        + "\nreturn 0; }\n"
    )
    exe = tmp_path / "layout"
    subprocess.run(["cc", f"-I{SHIM}", "-o", exe, src], check=True)
    return subprocess.run([exe], capture_output=True, text=True, check=True).stdout


def test_header_and_record_layout_match_the_decoder(tmp_path):
    out = _c_layout(tmp_path).splitlines()
    table = {parts[0]: parts[1:] for parts in (line.split() for line in out)}
    for struct, dtype in (
        ("uvmshim_header", layout.HEADER_DTYPE),
        ("uvmshim_record", layout.RECORD_DTYPE),
    ):
        assert int(table[struct][0]) == dtype.itemsize
        for name in dtype.names:
            sub, offset = dtype.fields[name][:2]
            assert [int(x) for x in table[f"{struct}.{name}"]] == [offset, sub.itemsize], name
    assert int(table["MAGIC"][0]) == layout.MAGIC
    assert int(table["VERSION"][0]) == layout.VERSION
    assert int(table["HEADER_SIZE"][0]) == layout.HEADER_SIZE
    assert int(table["RECORD_SIZE"][0]) == layout.RECORD_SIZE
    assert int(table["CHUNK_RECORDS"][0]) == layout.CHUNK_RECORDS
    assert int(table["DUR_US"][0]) == layout.DUR_US


def test_long_durations_round_trip_through_the_32_bit_word(tmp_path):
    ns = [0, 1, 999, (1 << 31) - 1, 1 << 31, 3_000_000_123, 2_000_000_000_000, 1 << 62]
    src = tmp_path / "dur.c"
    src.write_text(
        '#include <stdio.h>\n#include "uvmshim.h"\nint main(void) {\n'
        + "".join(f'printf("%u\\n", uvmshim_dur({n}ull));\n' for n in ns)
        + "return 0; }\n"
    )
    exe = tmp_path / "dur"
    subprocess.run(["cc", f"-I{SHIM}", "-o", exe, src], check=True)
    words = [int(w) for w in subprocess.run([exe], capture_output=True, text=True).stdout.split()]
    recs = np.zeros(len(words), dtype=layout.RECORD_DTYPE)
    recs["dur"] = words
    back = layout.dur_ns(recs).tolist()
    # exact below 2^31 ns (2.1 s), to the microsecond above, saturated past ~35 minutes
    assert back[:4] == ns[:4]
    assert back[4:6] == [n // 1000 * 1000 for n in ns[4:6]]
    assert back[6] == 2_000_000_000_000 and back[7] == ((1 << 31) - 1) * 1000
