"""The starting-state snapshot's page-cache residency: cachestat(2) and mincore(2) agree with
what was read (no root needed)."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from tests.test_record import MiB, cold_file
from uvmtrace.tracer import snapshot


def test_residency_counts_what_was_read_by_both_methods(tmp_path: Path) -> None:
    path = cold_file(tmp_path / "f.bin", 8 * MiB)
    with open(path, "rb", buffering=0) as f:
        fd = f.fileno()
        cold = (snapshot.mincore(fd, 8 * MiB), snapshot.cachestat(fd))
        while f.read(MiB):  # every page read, so none is still in flight (readahead)
            pass
        warm = (snapshot.mincore(fd, 8 * MiB), snapshot.cachestat(fd))
    pages = 8 * MiB // mmap.PAGESIZE
    assert cold[0].pages == 0 and warm[0].pages == pages and warm[0].method == "mincore"
    if cold[1] is not None:  # cachestat: Linux >= 6.5
        assert cold[1].pages == 0 and warm[1].pages == pages and warm[1].dirty == 0


def test_a_process_snapshot_names_its_mapped_and_open_files(tmp_path: Path) -> None:
    path = tmp_path / "held.bin"
    path.write_bytes(b"x" * MiB)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ):
        batch, counts = snapshot.take([os.getpid()])
    rows = batch.to_pylist()
    (held,) = [r for r in rows if r["event"] == "file_cache" and r["path"] == str(path)]
    assert held["item"] == "mapped,open"
    assert held["bytes"] == held["total_bytes"] == MiB  # just written: all in the page cache
    rollup = {r["item"]: r["bytes"] for r in rows if r["event"] == "smaps_rollup"}
    assert rollup["Rss"] > 0 and "Pss_Anon" in rollup
    assert counts["processes"] == 1 and counts["files"] >= 1
