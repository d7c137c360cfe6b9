"""Recorder memory over a long recording: the recorder's RSS, sampled every second while it
records `--raw` (every event kept) of a workload faulting 100k pages/s. Reports the RSS once the
command runs (after the probes are loaded), the steady level (median of the second half), the
peak, and the slope over the second half (flat means bounded), with what the steady RSS is made
of: anonymous memory, the BPF ring buffers the recorder maps, and the rest of the file pages
(shared libraries: they count in RSS too)."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from bench.common import UVMTRACE, Figure, parse_kv
from uvmtrace.recording.reader import open_recording

MB = 1e6
_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def _status(pid: int) -> dict[str, int] | None:
    """VmRSS and its parts, in bytes, from /proc/PID/status."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in _FIELDS:
            out[key] = int(rest.split()[0]) * 1024
    return out if "VmRSS" in out else None


def _mapped(pid: int) -> dict[str, int]:
    """RSS per kind of mapping from /proc/PID/smaps: BPF maps (the rings), libraries, anon."""
    out = {"bpf maps": 0, "libraries": 0, "anon": 0}
    where = "anon"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 6)
                if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                    name = head[5].strip() if len(head) > 5 else ""
                    where = (
                        "bpf maps"
                        if name.startswith("anon_inode:bpf")
                        else "libraries"
                        if name.startswith("/")
                        else "anon"
                    )
                elif head[0] == "Rss:":
                    out[where] += int(head[1]) * 1024
    except OSError:
        pass
    return out


def _slope_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, bytes per minute."""
    if len(points) < 2:
        return 0.0
    return statistics.linear_regression([t for t, _ in points], [r for _, r in points])[0] * 60


def run(
    workdir: Path, faulter: Path, seconds: float = 120.0, rate: float = 100_000, raw: bool = True
) -> list[Figure]:
    """`raw`: every event a row (the recorder's heaviest load); else the default aggregation
    (the same events summed per time bucket: what most recordings run with)."""
    out = workdir / "memory-bench.parquet"
    mode = ["--raw"] if raw else []
    cmd = [*UVMTRACE, "record", "-q", "--no-shim", *mode, "--force", "-o", str(out), "--",
           str(faulter), "churn", str(seconds), str(rate)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    samples: list[tuple[float, dict[str, int]]] = []  # (seconds since the command started, RSS)
    started: float | None = None
    mapped: dict[str, int] = {}
    while proc.poll() is None:
        status = _status(proc.pid)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        try:
            running = bool(children.read_text().split())  # the tee and the command
        except OSError:
            running = False
        if status is not None and running:
            started = started if started is not None else time.monotonic()
            samples.append((time.monotonic() - started, status))
            if not mapped and samples[-1][0] >= seconds / 2:
                mapped = _mapped(proc.pid)
        time.sleep(1.0)
    stdout, _ = proc.communicate()
    if proc.returncode != 0 or len(samples) < 4 or not out.exists():
        curve = ", ".join(f"{t:.0f}s {s['VmRSS'] / MB:.0f}" for t, s in samples[::10])
        raise RuntimeError(
            f"recording failed (exit {proc.returncode}, {len(samples)} samples); MB: {curve}"
        )
    work = parse_kv(stdout)
    rows = open_recording(out).num_rows
    out.unlink()
    rss = [(t, s["VmRSS"]) for t, s in samples]
    half = [s for s in samples if s[0] >= samples[-1][0] / 2]
    steady = statistics.median(s["VmRSS"] for _, s in half)
    parts = {k: statistics.median(s.get(k, 0) for _, s in half) for k in _FIELDS[1:]}
    per_min = _slope_per_min([(t, s["VmRSS"]) for t, s in half])
    note = (
        f"{seconds:.0f} s at {work['faults'] / (work['elapsed_ns'] / 1e9):,.0f} faults/s, "
        f"{rows:,} rows ({rows / seconds:,.0f}/s), {time.monotonic() - t0:.0f} s in all"
    )
    split = ", ".join(f"{k} {v / MB:.0f}" for k, v in parts.items())
    if mapped:
        split += "; at mid-run " + ", ".join(f"{k} {v / MB:.0f}" for k, v in mapped.items())
    curve = ", ".join(f"{t:.0f}s {r / MB:.0f}" for t, r in rss[:: max(len(rss) // 8, 1)])
    return [
        Figure("recorder RSS when the command starts", None, rss[0][1] / MB, "MB"),
        Figure(
            f"recorder RSS steady ({'--raw' if raw else 'aggregated'}, 2nd half median)",
            None,
            steady / MB,
            "MB",
            goal="< 150",
            met=steady < 150 * MB,
            note=f"{note}; MB: {split}",
        ),  # fmt: skip
        Figure(
            "recorder RSS peak",
            None,
            max(r for _, r in rss) / MB,
            "MB",
            note=f"MB over time: {curve}",
        ),  # fmt: skip
        Figure(
            "recorder RSS slope over the 2nd half",
            None,
            per_min / MB,
            "MB/min",
            goal="flat (< 5)",
            met=abs(per_min) < 5 * MB,
        ),  # fmt: skip
    ]
