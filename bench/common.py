"""What every benchmark shares: build the C workload, repeat, take medians, print one line per
figure (ratio plus absolute numbers) and collect figures for the JSON file."""

from __future__ import annotations

import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
UVMTRACE = [sys.executable, "-m", "uvmtrace.cli"]


@dataclass
class Figure:
    name: str
    baseline: float | None  # absolute value without uvmtrace (or the reference)
    measured: float  # absolute value with uvmtrace
    unit: str
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.measured / self.baseline if self.baseline else None

    def line(self) -> str:
        ratio = f"{self.ratio:7.3f}x" if self.ratio is not None else "        "
        base = f"{self.baseline:,.3f}" if self.baseline is not None else "-"
        verdict = {True: "MET", False: "MISSED", None: ""}[self.met]
        goal = f"  goal {self.goal} {verdict}" if self.goal else ""
        note = f"  ({self.note})" if self.note else ""
        return f"{self.name:<52} {ratio}  {self.measured:,.3f} vs {base} {self.unit}{goal}{note}"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def median(values: list[float]) -> float:
    return statistics.median(values)


def build_faulter(workdir: Path) -> Path:
    exe = workdir / "faulter"
    subprocess.run(["cc", "-O2", "-o", str(exe), str(BENCH / "faulter.c")], check=True)
    return exe


def parse_kv(output: str) -> dict[str, float]:
    """The `key=value` pairs of the last line that has them."""
    for line in reversed(output.splitlines()):
        pairs = [p.split("=", 1) for p in line.split() if "=" in p]
        if pairs:
            return {k: float(v) for k, v in pairs}
    raise RuntimeError(f"no key=value line in output: {output[-500:]!r}")
