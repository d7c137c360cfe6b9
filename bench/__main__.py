"""`python -m bench`: every CPU benchmark, baseline and uvmtrace side by side in one run.

Prints one line per figure (ratio, absolute numbers, goal) and writes them to a JSON file.
Needs root (the probes). The probe figures run peers on the same tracepoints (perf stat,
bpftrace) and profile the programs with bpftool: `sudo scripts/setup-host --bench` installs
them, and a missing one is printed. GPU figures: `python -m bench --gpu` on the GPU machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Figure, build_faulter

GiB = 1 << 30


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--reps", type=int, default=5, help="repetitions per figure (median)")
    ap.add_argument("--quick", action="store_true", help="small sizes, 3 repetitions")
    ap.add_argument(
        "--only",
        choices=["startup", "shim", "probes", "recorder", "memory", "analysis", "summarize"],
        action="append",
    )
    ap.add_argument(
        "--memory-seconds",
        type=float,
        default=None,
        help="length of the recorder-memory run (default 120 s, 30 s with --quick; 600 for the "
        "10-minute check)",
    )
    ap.add_argument(
        "--memory-rate",
        type=float,
        default=100_000,
        help="page faults/s of the recorder-memory run (--raw keeps ~7 rows per fault; 15000 "
        "is ~100 k rows/s, which a 10-minute run spools in ~8 GB)",
    )
    ap.add_argument(
        "--memory-mode",
        choices=["raw", "aggregated"],
        default="raw",
        help="record the recorder-memory run with --raw (every event a row) or aggregated "
        "(the default of `uvmtrace record`)",
    )
    ap.add_argument("--gpu", action="store_true", help="the GPU figures (shim on a real driver)")
    ap.add_argument("-o", "--output", type=Path, default=Path("bench/results.json"))
    args = ap.parse_args()
    if os.geteuid() != 0 and not args.gpu:
        print("python -m bench: the probe benchmarks need root (sudo)", file=sys.stderr)
        return 2
    reps = 3 if args.quick else args.reps
    every = ["startup", "shim", "probes", "recorder", "memory", "analysis", "summarize"]
    wanted = set(args.only or every)
    figures: list[Figure] = []
    started = time.monotonic()

    def show(new: list[Figure]) -> None:
        for fig in new:
            print(fig.line(), flush=True)
        figures.extend(new)

    with tempfile.TemporaryDirectory(prefix="uvmtrace-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        if "startup" in wanted and not args.gpu:
            startup = importlib.import_module("bench.startup_bench")
            show(startup.figures(reps=reps))
        if "shim" in wanted:
            shim = importlib.import_module("bench.shim_bench")
            show(shim.figures(reps=reps, gpu=args.gpu))
        if not args.gpu:
            faulter = build_faulter(work)
            if "probes" in wanted:
                probes = importlib.import_module("bench.probes_bench")
                anon, file = (1 * GiB, 512 << 20) if args.quick else (1 * GiB, 1 * GiB)
                # the probe goals are medians of >= 11 interleaved repetitions
                show(probes.run(work, faulter, reps if args.quick else max(reps, 11), anon, file))
            if "recorder" in wanted:
                recorder = importlib.import_module("bench.recorder_bench")
                show(recorder.run(work, faulter, seconds=2.0 if args.quick else 3.0))
            if "memory" in wanted:
                memory = importlib.import_module("bench.recorder_memory_bench")
                length = args.memory_seconds or (30.0 if args.quick else 120.0)
                show(
                    memory.run(
                        work,
                        faulter,
                        seconds=length,
                        rate=args.memory_rate,
                        raw=args.memory_mode == "raw",
                    )
                )
            if "analysis" in wanted:
                analysis = importlib.import_module("bench.analysis_bench")
                sizes = (1_000_000,) if args.quick else (1_000_000, 10_000_000)
                show(analysis.figures(work, sizes=sizes, reps=reps))
            if "summarize" in wanted:
                summarize = importlib.import_module("bench.summarize_bench")
                show(summarize.figures(work, n_recordings=200, n_events=50_000, reps=reps))
    report = {
        "host": platform.node(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "seconds": round(time.monotonic() - started, 1),
        "figures": [f.as_json() for f in figures],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
