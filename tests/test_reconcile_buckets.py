"""Reconciling aggregated charges with memory.stat: a bucket holds only its start time, so the
charges of the bucket a sample fell in may be before or after it; they count as either, and
only a difference beyond them is one (a sample delayed on a busy host is not a probe's loss)."""

from __future__ import annotations

from pathlib import Path

from tests.recordings import MIB, NATIVE_CGROUP, Recorder
from uvmtrace.analysis.load import load_run
from uvmtrace.analysis.reconcile import memcg_rows

BUCKET = 100_000_000  # 100 ms


def _cache_row(tmp_path: Path, stat_last: int, raw: bool = False) -> dict:
    rec = Recorder(raw=raw, bucket_ns=BUCKET, target_cgroups=[NATIVE_CGROUP])
    # samples 50 ms into their buckets: half of each edge bucket's charges came before them
    rec.memory_stat(0.05, NATIVE_CGROUP, cache=2 * MIB, rss=0)
    rec.charge(0.0, NATIVE_CGROUP, "NR_FILE_PAGES", 4 * MIB)  # bucket of the first sample
    rec.charge(0.5, NATIVE_CGROUP, "NR_FILE_PAGES", 100 * MIB)
    rec.charge(1.0, NATIVE_CGROUP, "NR_FILE_PAGES", 6 * MIB)  # bucket of the last sample
    rec.memory_stat(1.05, NATIVE_CGROUP, cache=stat_last, rss=0)
    run = load_run(rec.write(tmp_path / "run.parquet"))
    return next(r for r in memcg_rows(run) if r["key"] == "cache")


def test_edge_buckets_count_either_way_so_a_late_sample_is_no_difference(tmp_path: Path) -> None:
    # memory.stat moved 105 MiB: 2 of the first bucket's 4, the 100, 3 of the last bucket's 6
    row = _cache_row(tmp_path, 107 * MIB)
    assert row["stat_delta"] == 105 * MIB
    assert row["traced_delta"] == 105 * MIB and row["difference"] == 0
    assert row["edge_bytes"] == 10 * MIB


def test_a_difference_beyond_the_edge_buckets_is_reported(tmp_path: Path) -> None:
    row = _cache_row(tmp_path, 122 * MIB)  # 120 MiB moved; at most 110 traced
    assert row["traced_delta"] == 110 * MIB and row["difference"] == -10 * MIB


def test_raw_rows_hold_their_own_time_and_have_no_edge(tmp_path: Path) -> None:
    row = _cache_row(tmp_path, 107 * MIB, raw=True)
    # the charge at 0.0 s is before the first sample, the one at 1.0 s before the last
    assert row["traced_delta"] == 106 * MIB and row["edge_bytes"] == 0
