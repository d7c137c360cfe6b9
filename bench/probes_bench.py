"""Probes on fault-bound work: touch fresh anonymous memory and read a file into the page cache,
bare vs under `uvmtrace record` with aggregated probes vs `--raw`. The workload times itself, so
the recorder's start-up (BPF compilation) is not counted, only what the probes add to the work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench.common import UVMTRACE, Figure, median, parse_kv

MODES = {"bare": None, "aggregated": [], "raw": ["--raw"]}


def _drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _run(mode: list[str] | None, argv: list[str], out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the workload itself)."""
    cmd = argv if mode is None else [*UVMTRACE, "record", "-q", "--no-shim", *mode,
                                     "-o", str(out), "--", *argv]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out.unlink(missing_ok=True)
    kv = parse_kv(r.stdout)
    return kv["elapsed_ns"] / 1e9, kv["cpu_ns"] / 1e9


def run(workdir: Path, faulter: Path, reps: int, anon_bytes: int, file_bytes: int) -> list[Figure]:
    data = workdir / "probe-bench.bin"
    with open(data, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(file_bytes >> 20):
            f.write(block)
    workloads = {
        f"touch {anon_bytes >> 30} GiB fresh anon": [str(faulter), "anon", str(anon_bytes)],
        f"read {file_bytes >> 30} GiB file (cold cache)": [str(faulter), "read", str(data)],
    }
    figures = []
    for label, argv in workloads.items():
        wall: dict[str, list[float]] = {m: [] for m in MODES}
        cpu: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(reps):  # modes interleaved, so drift hits them alike
            for mode, extra in MODES.items():
                if argv[1] == "read":
                    _drop_cache(data)
                w, c = _run(extra, argv, workdir / "probe-bench.parquet")
                wall[mode].append(w)
                cpu[mode].append(c)
        # CPU time of the workload is what the in-kernel probes add to it (they run in its
        # context); wall time also moves with whatever else this shared 2-core machine does.
        bare, agg, raw = (median(cpu[m]) for m in ("bare", "aggregated", "raw"))
        walls = {m: median(wall[m]) for m in MODES}
        figures.append(
            Figure(
                f"probes aggregated: {label} (workload CPU)",
                bare,
                agg,
                "s",
                goal="< 1.05x",
                met=agg / bare < 1.05,
                note=f"wall {walls['aggregated']:.3f} vs {walls['bare']:.3f} s",
            )
        )
        figures.append(Figure(f"probes raw: {label} (workload CPU)", bare, raw, "s",
                              note=f"reported as is; wall {walls['raw']:.3f} s"))  # fmt: skip
    data.unlink()
    return figures
