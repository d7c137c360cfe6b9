"""Recorder memory over a long recording: the recorder's RSS, sampled every second while it
records `--raw` (every event kept) of a workload faulting 100k pages/s. Reports the RSS once the
command runs (after BPF compilation), the steady level (median of the second half), the peak,
and the growth over the second half (flat means bounded)."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from bench.common import UVMTRACE, Figure, parse_kv
from uvmtrace.recording.reader import open_recording

MB = 1e6


def _rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run(
    workdir: Path, faulter: Path, seconds: float = 120.0, rate: float = 100_000
) -> list[Figure]:
    out = workdir / "memory-bench.parquet"
    cmd = [*UVMTRACE, "record", "-q", "--no-shim", "--raw", "--force", "-o", str(out), "--",
           str(faulter), "churn", str(seconds), str(rate)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    samples: list[tuple[float, int]] = []  # (seconds since the command started, RSS)
    started: float | None = None
    while proc.poll() is None:
        rss = _rss(proc.pid)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        try:
            running = bool(children.read_text().split())  # the tee and the command
        except OSError:
            running = False
        if rss is not None and running:
            started = started if started is not None else time.monotonic()
            samples.append((time.monotonic() - started, rss))
        time.sleep(1.0)
    stdout, _ = proc.communicate()
    if proc.returncode != 0 or len(samples) < 4:
        raise RuntimeError(f"recording failed (exit {proc.returncode}, {len(samples)} samples)")
    work = parse_kv(stdout)
    rows = open_recording(out).num_rows
    out.unlink()
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    steady = statistics.median(r for _, r in half)
    growth = half[-1][1] - half[0][1]
    per_min = growth / max(half[-1][0] - half[0][0], 1) * 60
    note = (
        f"{seconds:.0f} s at {work['faults'] / (work['elapsed_ns'] / 1e9):,.0f} faults/s, "
        f"{rows:,} rows ({rows / seconds:,.0f}/s), {time.monotonic() - t0:.0f} s in all"
    )
    curve = ", ".join(f"{t:.0f}s {r / MB:.0f}" for t, r in samples[:: max(len(samples) // 8, 1)])
    return [
        Figure("recorder RSS when the command starts", None, samples[0][1] / MB, "MB"),
        Figure(
            "recorder RSS steady (--raw, 2nd half median)",
            None,
            steady / MB,
            "MB",
            goal="< 150",
            met=steady < 150 * MB,
            note=note,
        ),  # fmt: skip
        Figure(
            "recorder RSS peak",
            None,
            max(r for _, r in samples) / MB,
            "MB",
            note=f"MB over time: {curve}",
        ),  # fmt: skip
        Figure(
            "recorder RSS growth over the 2nd half",
            None,
            per_min / MB,
            "MB/min",
            goal="flat (< 5)",
            met=per_min < 5 * MB,
        ),  # fmt: skip
    ]
