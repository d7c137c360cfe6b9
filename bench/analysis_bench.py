"""Benchmark of `uvmtrace report` and `uvmtrace diff` on large recordings (issue #7, item 5).

Recordings of N events shaped like a `record --raw` run of an LLM server, native and in Docker
(bench/analysis_recordings.py), are written through the real writer. Each figure then runs, in a
fresh process whose peak RSS (VmHWM) it reports itself:
  baseline  a bare polars scan of the same file(s): one pass over every row, grouping by event
            and summing bytes (two columns read, nothing else)
  report    `uvmtrace report FILE` (terminal output, to /dev/null)
  diff      `uvmtrace diff A B`; its baseline scans both files
Median of `reps` runs; goal (issue #7): diff of two 10-million-event recordings under 10 s.

Alone: python -m bench.analysis_bench [--sizes 1,5,10] [--reps 5] [--dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.analysis_recordings import generate
from bench.common import UVMTRACE, Figure, median

CLI = UVMTRACE[1:]  # `-m uvmtrace.cli`, run by the peak-measuring wrapper

DIFF_GOAL_S = 10.0
DIFF_GOAL_EVENTS = 10_000_000

_SCAN = (
    "import sys, polars as pl\n"
    "for f in sys.argv[1:]:\n"
    "    pl.scan_parquet(f).group_by('event').agg(pl.col('bytes').sum(), pl.len()).collect()\n"
)
# Runs a module (`-m NAME ARGS`) or code (`-c CODE ARGS`) and, at exit, writes its own VmHWM to
# the inherited fd. Not wait4's ru_maxrss: that counts the pages of the (large) benchmark process
# the child was forked from.
_PEAK = """
import atexit, os, runpy, sys
def _peak():
    with open('/proc/self/status') as f:
        kib = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
    os.write(int(os.environ['BENCH_PEAK_FD']), kib.encode())
atexit.register(_peak)
mode, what, *args = sys.argv[1:]
if mode == '-m':
    sys.argv = [what, *args]
    runpy.run_module(what, run_name='__main__', alter_sys=True)
else:
    sys.argv = ['-c', *args]
    exec(compile(what, '<bench>', 'exec'), {'__name__': '__main__'})
"""


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh Python process: `-m MODULE ARGS` or
    `-c CODE ARGS`."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, "BENCH_PEAK_FD": str(write_fd)}
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", _PEAK, *argv],
        stdout=subprocess.DEVNULL,
        pass_fds=(write_fd,),
        env=env,
    )
    os.close(write_fd)
    status = proc.wait()
    wall = time.perf_counter() - t
    with os.fdopen(read_fd, "rb") as f:
        peak_kib = f.read()
    if status != 0 or not peak_kib:
        raise RuntimeError(f"benchmark command failed ({status}): {' '.join(argv)}")
    return wall, int(peak_kib) / 1024


def timed(argv: list[str], reps: int) -> tuple[float, float]:
    runs = [run_once(argv) for _ in range(reps)]
    return median([w for w, _ in runs]), max(r for _, r in runs)


def recordings(work: Path, n_events: int) -> tuple[Path, Path]:
    """The native and the Docker recording of `n_events` each (written once per work dir)."""
    tag = f"{n_events // 1000}k"
    out = []
    for side, docker in (("native", False), ("docker", True)):
        path = work / f"analysis-{side}-{tag}.parquet"
        if not path.exists():
            generate(path, n_events, docker=docker, seed=n_events + docker)
        out.append(path)
    return out[0], out[1]


def figures(work: Path, sizes: tuple[int, ...], reps: int) -> list[Figure]:
    out: list[Figure] = []
    for n in sizes:
        a, b = recordings(work, n)
        label = f"{n / 1e6:g}M events"
        scan1_s, scan1_rss = timed(["-c", _SCAN, str(b)], reps)
        report_s, report_rss = timed([*CLI, "report", str(b)], reps)
        scan2_s, scan2_rss = timed(["-c", _SCAN, str(a), str(b)], reps)
        diff_s, diff_rss = timed([*CLI, "diff", str(a), str(b)], reps)
        size_mib = b.stat().st_size / (1 << 20)
        out.append(
            Figure(
                f"analysis: report, {label}",
                scan1_s,
                report_s,
                "s",
                note=f"peak RSS {report_rss:.0f} MiB vs scan {scan1_rss:.0f} MiB; "
                f"file {size_mib:.0f} MiB",
            )
        )
        goal = n >= DIFF_GOAL_EVENTS
        out.append(
            Figure(
                f"analysis: diff, 2 x {label}",
                scan2_s,
                diff_s,
                "s",
                goal=f"< {DIFF_GOAL_S:g} s" if goal else "",
                met=(diff_s < DIFF_GOAL_S) if goal else None,
                note=f"peak RSS {diff_rss:.0f} MiB vs scan {scan2_rss:.0f} MiB",
            )
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.analysis_bench", description=__doc__)
    ap.add_argument("--sizes", default="1,5,10", help="millions of events per recording")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/uvmtrace-analysis-bench"))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    args.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sizes = tuple(round(float(x) * 1_000_000) for x in args.sizes.split(","))
    figs = []
    for n in sizes:  # one size at a time, so each line shows as soon as it is measured
        for fig in figures(args.dir, (n,), args.reps):
            print(fig.line(), flush=True)
            figs.append(fig)
    if args.json:
        args.json.write_text(json.dumps([f.as_json() for f in figs], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
