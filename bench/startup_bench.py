"""Start-up: what a user waits for before any work, in fresh processes, interleaved.

--help   `uvmtrace --help` against the interpreter's own start (`python -c pass`); goal < 0.3 s
report   `uvmtrace report` of a small real recording (tests/data, an H200 run) against the
         imports alone (`import` of the CLI and the analysis modules report loads): the report's
         time should be its work, so the imports' share is the figure (goal < 0.5x)
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.common import UVMTRACE, Figure, median

SMALL_RECORDING = Path(__file__).resolve().parent.parent / "tests/data/h200_sizer_warm.parquet"
HELP_GOAL_S = 0.3
IMPORT_SHARE_GOAL = 0.5
# What `uvmtrace report` imports before it reads a byte (the same modules, in one process).
REPORT_IMPORTS = "import uvmtrace.cli.main, uvmtrace.cli.commands.report, uvmtrace.analysis.report"


def _seconds(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def figures(reps: int) -> list[Figure]:
    runs: dict[str, list[float]] = {"python": [], "help": [], "imports": [], "report": []}
    argvs = {
        "python": [sys.executable, "-c", "pass"],
        "help": [*UVMTRACE, "--help"],
        "imports": [sys.executable, "-c", REPORT_IMPORTS],
        "report": [*UVMTRACE, "report", str(SMALL_RECORDING)],
    }
    _seconds(argvs["report"])  # warm the page cache: every run then starts alike
    for _ in range(max(reps, 5)):  # interleaved: drift hits every side alike
        for name, argv in argvs.items():
            runs[name].append(_seconds(argv))
    py, helps, imports, report = (median(runs[k]) for k in ("python", "help", "imports", "report"))
    share = imports / report
    return [
        Figure("start-up: uvmtrace --help (vs python -c pass)", py, helps, "s",
               goal=f"< {HELP_GOAL_S} s", met=helps < HELP_GOAL_S),
        Figure(f"start-up: report of {SMALL_RECORDING.name}, imports share", report, imports, "s",
               goal=f"< {IMPORT_SHARE_GOAL}x", met=share < IMPORT_SHARE_GOAL,
               note=f"report {report:.3f} s, of which imports {imports:.3f} s"),
    ]  # fmt: skip
