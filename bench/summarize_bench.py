"""Benchmark of `uvmtrace summarize` over a sweep of many recordings (issue #17).

A sweep directory of N recordings (half native, half Docker, `variant=NAME/run=I/` layout, each
a synthetic `record --raw`-shaped recording of E events from bench/analysis_recordings.py,
written through the real writer) is summarized in a fresh process (peak RSS from VmHWM, as in
bench/analysis_bench.py). The baseline is a bare polars scan of the same files: one pass over
every row of each, grouping by event and summing bytes. Median of `reps` runs.

Alone: python -m bench.summarize_bench [--recordings 200] [--events 50000] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.analysis_bench import CLI, timed
from bench.analysis_recordings import generate
from bench.common import Figure

_SCAN_ALL = (
    "import sys, polars as pl\n"
    "from pathlib import Path\n"
    "for f in sorted(Path(sys.argv[1]).glob('variant=*/run=*/recording.parquet')):\n"
    "    pl.scan_parquet(f).group_by('event').agg(pl.col('bytes').sum(), pl.len()).collect()\n"
)


def sweep_dir(work: Path, n_recordings: int, n_events: int) -> Path:
    """`n_recordings` recordings in a sweep layout (written once per work dir)."""
    out = work / f"summarize-{n_recordings}x{n_events // 1000}k"
    (out / "sweep.json").parent.mkdir(parents=True, exist_ok=True)
    for i in range(n_recordings):
        docker = i % 2 == 1
        where = out / f"variant={'docker' if docker else 'native'}" / f"run={i // 2 + 1}"
        path = where / "recording.parquet"
        if not path.exists():
            where.mkdir(parents=True, exist_ok=True)
            generate(path, n_events, docker=docker, seed=1000 + i)
    state = {"variants": [{"name": "native"}, {"name": "docker"}]}
    (out / "sweep.json").write_text(json.dumps(state))
    return out


def figures(work: Path, n_recordings: int, n_events: int, reps: int) -> list[Figure]:
    out = sweep_dir(work, n_recordings, n_events)
    scan_s, scan_rss = timed(["-c", _SCAN_ALL, str(out)], reps)
    summ_s, summ_rss = timed([*CLI, "summarize", str(out)], reps)
    size_mib = sum(p.stat().st_size for p in out.rglob("recording.parquet")) / (1 << 20)
    return [
        Figure(
            f"analysis: summarize, {n_recordings} x {n_events / 1e3:g}k events",
            scan_s,
            summ_s,
            "s",
            note=f"{summ_s / n_recordings * 1e3:.0f} ms per recording; peak RSS {summ_rss:.0f} "
            f"MiB vs scan {scan_rss:.0f} MiB; {size_mib:.0f} MiB of recordings",
        )
    ]


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.summarize_bench", description=__doc__)
    ap.add_argument("--recordings", type=int, default=200)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp/uvmtrace-summarize-bench"))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    args.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    figs = figures(args.dir, args.recordings, args.events, args.reps)
    for fig in figs:
        print(fig.line(), flush=True)
    if args.json:
        args.json.write_text(json.dumps([f.as_json() for f in figs], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
