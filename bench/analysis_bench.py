"""Benchmark of `uvmtrace report` and `uvmtrace diff` on large synthetic recordings.

Generates recordings of 1M, 5M and 10M events with a realistic mix (mostly memcg charges and
page faults, some page-cache, mapping, sample, CUDA and proc events) through the real writer,
then times, each in a fresh process (wall seconds, peak RSS):
  - scan_len:   pl.scan_parquet(f).select(pl.len())                  (footer only)
  - scan_2col:  pl.scan_parquet(f).group_by("event").agg(sum(bytes)) (reads two columns)
  - report:     build_report(f) rendered to the terminal (no HTML)
  - diff:       build_diff(a, b) of two recordings of the same size
and prints the ratios to the 2-column scan. Usage:
  python bench/analysis_bench.py [--sizes 1,5,10] [--dir /tmp/uvmtrace-bench] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from uvmtrace.recording.schema import make_batch
from uvmtrace.tracer.writer import RecordingWriter

GIB = 1 << 30
CHUNK = 1_000_000
# (stream, event, share of events)
MIX = [
    ("kernel", "memcg_charge", 0.55),
    ("kernel", "page_fault", 0.25),
    ("kernel", "filemap_add", 0.05),
    ("kernel", "filemap_delete", 0.02),
    ("kernel", "mmap", 0.03),
    ("kernel", "munmap", 0.02),
    ("sample", "meminfo", 0.02),
    ("sample", "memory.stat", 0.03),
    ("cuda", "cuMemGetInfo", 0.01),
    ("cuda", "cuMemAlloc_v2", 0.01),
    ("proc", "proc_faults", 0.01),
]
ITEMS = [
    "NR_FILE_PAGES",
    "NR_ANON_MAPPED",
    "NR_SHMEM",
    "MEMCG_KMEM",
    "NR_FILE_MAPPED",
    "NR_ACTIVE_FILE",
    "NR_INACTIVE_ANON",
    "NR_SLAB_UNRECLAIMABLE_B",
]
STAT_KEYS = ["cache", "rss", "shmem", "mapped_file"]


def _dict(values: list[str], codes: np.ndarray) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(values))


def _chunk(
    rng: np.random.Generator, n: int, t_start: int, span: int, docker: bool
) -> pa.RecordBatch:
    shares = np.array([s for _, _, s in MIX])
    kind = rng.choice(len(MIX), size=n, p=shares / shares.sum())
    ts = np.sort(rng.integers(t_start, t_start + span, size=n))
    events = [e for _, e, _ in MIX]
    streams = sorted({s for s, _, _ in MIX})
    stream_code = np.array([streams.index(s) for s, _, _ in MIX])[kind]
    is_ = {e: kind == i for i, (_, e, _) in enumerate(MIX)}
    pid = rng.integers(1000, 1064, size=n).astype(np.int32)
    cgroup = np.where(rng.random(n) < 0.9, 22 if docker else 11, 30).astype(np.uint64)
    item_code = rng.integers(0, len(ITEMS), size=n)
    page = 4096 * rng.integers(1, 513, size=n)
    sign = np.where(rng.random(n) < 0.45, -1, 1)
    nbytes = np.where(is_["memcg_charge"], sign * page, page)
    nbytes = np.where(is_["cuMemAlloc_v2"], rng.integers(1, 512, size=n) << 20, nbytes)
    free = np.where(is_["cuMemGetInfo"], 40 * GIB + rng.integers(0, GIB, size=n), 0)
    item_vals = ITEMS + STAT_KEYS + ["MemFree", "anon", "minflt"]
    item = np.where(is_["memory.stat"], len(ITEMS) + item_code % 4, item_code)
    item = np.where(is_["meminfo"], len(ITEMS) + 4, item)
    item = np.where(is_["page_fault"], len(ITEMS) + 5, item)
    item = np.where(is_["proc_faults"], len(ITEMS) + 6, item)
    paths = [f"/models/shard-{i:02d}.safetensors" for i in range(16)]
    has_path = is_["filemap_add"] | is_["filemap_delete"]
    cols = {
        "ts_ns": ts,
        "stream": _dict(streams, stream_code),
        "event": _dict(events, kind),
        "pid": pid,
        "tid": pid,
        "cgroup_id": pa.array(cgroup, mask=~(is_["memcg_charge"] | has_path | is_["memory.stat"])),
        "item": _dict(item_vals, item),
        "bytes": nbytes,
        "free_bytes": pa.array(free, mask=~is_["cuMemGetInfo"]),
        "count": np.where(is_["page_fault"], rng.integers(1, 64, size=n), 1),
        "path": pa.DictionaryArray.from_arrays(
            pa.array(rng.integers(0, 16, size=n).astype(np.int32), mask=~has_path),
            pa.array(paths),
        ),
        "comm": _dict(["python", "trtllm"], (pid % 2).astype(np.int32)),
    }
    return make_batch(cols, num_rows=n)


def generate(path: Path, n_events: int, docker: bool, seed: int) -> Path:
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    writer = RecordingWriter(
        path,
        {"command": ["bench"], "cgroup_version": 1, "cgroups": {"22": {"path": "/docker/bench"}}},
        spool=False,
    )
    span = 600 * 1_000_000_000  # ten minutes of recording
    per_chunk = span * CHUNK // max(n_events, 1)
    done, t = 0, 0
    while done < n_events:
        n = min(CHUNK, n_events - done)
        writer.write(_chunk(rng, n, t, per_chunk, docker))
        done += n
        t += per_chunk
    return writer.close()


TASKS = {
    "scan_len": "import polars as pl; pl.scan_parquet({a!r}).select(pl.len()).collect()",
    "scan_2col": (
        "import polars as pl; pl.scan_parquet({a!r}).group_by('event')"
        ".agg(pl.col('bytes').sum()).collect()"
    ),
    "report": (
        "import io; from rich.console import Console; "
        "from uvmtrace.analysis.report import build_report; "
        "from uvmtrace.analysis.render_terminal import print_report; "
        "print_report(build_report({a!r}, with_timeline=False), Console(file=io.StringIO()))"
    ),
    "diff": (
        "import io; from rich.console import Console; "
        "from uvmtrace.analysis.report import build_diff; "
        "from uvmtrace.analysis.render_terminal import print_diff; "
        "print_diff(build_diff({a!r}, {b!r}, with_timeline=False), Console(file=io.StringIO()))"
    ),
}


def measure(code: str) -> dict[str, float]:
    """Run `code` in a fresh interpreter: wall seconds and that process's peak RSS."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"benchmark task failed: {code}")
    return {"seconds": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,5,10", help="millions of events per recording")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/uvmtrace-bench"))
    ap.add_argument("--json", type=Path, default=Path("analysis_bench.json"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    results = []
    for m in [int(x) for x in args.sizes.split(",")]:
        n = m * 1_000_000
        t = time.perf_counter()
        a = generate(args.dir / f"native-{m}M.parquet", n, docker=False, seed=m)
        b = generate(args.dir / f"docker-{m}M.parquet", n, docker=True, seed=m + 100)
        gen_s = time.perf_counter() - t
        row: dict[str, object] = {
            "events_per_recording": n,
            "file_mib": round(b.stat().st_size / (1 << 20), 1),
            "generate_s": round(gen_s, 1),
        }
        for name, code in TASKS.items():
            row[name] = measure(code.format(a=str(a), b=str(b)))
        base = row["scan_2col"]["seconds"]  # type: ignore[index]
        row["report_vs_scan"] = round(row["report"]["seconds"] / base, 1)  # type: ignore[index]
        row["diff_vs_scan"] = round(row["diff"]["seconds"] / base, 1)  # type: ignore[index]
        results.append(row)
        print(
            f"{m:>3}M events ({row['file_mib']} MiB): scan {base:.2f} s | "
            f"report {row['report']['seconds']:.2f} s, {row['report']['peak_rss_mib']:.0f} MiB | "  # type: ignore[index]
            f"diff {row['diff']['seconds']:.2f} s, {row['diff']['peak_rss_mib']:.0f} MiB | "  # type: ignore[index]
            f"report/scan {row['report_vs_scan']}x, diff/scan {row['diff_vs_scan']}x",
            flush=True,
        )
    doc = {
        "cpus": os.cpu_count(),
        "results": results,
        "self_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
