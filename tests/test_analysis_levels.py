"""Levels, peaks and ends computed in one pass agree with the definition, step by step."""

from __future__ import annotations

import random

import polars as pl

from uvmtrace.analysis.levels import peak_end

GIB = 1 << 30


def reference(rows: list[tuple[int, str, int]]) -> dict[str, tuple[int, int | None, int]]:
    """key -> (peak, peak_ts, end) the slow, obvious way: one level per distinct timestamp."""
    out = {}
    for key in {k for _, k, _ in rows}:
        steps: dict[int, int] = {}
        for ts, k, b in rows:
            if k == key:
                steps[ts] = steps.get(ts, 0) + b
        level, peak, peak_ts = 0, 0, None
        for ts in sorted(steps):
            level += steps[ts]
            if level > peak:
                peak, peak_ts = level, ts
        out[key] = (peak, peak_ts, level)
    return out


def test_a_charge_and_its_uncharge_at_one_instant_are_no_peak():
    # shmem pages count +2 GiB as shmem and -2 GiB as file at the same instant (items.py): the
    # file level never really held the +1 GiB written first in the same bucket
    deltas = pl.DataFrame(
        {"ts_ns": [10, 10, 20], "kind": ["file", "file", "file"], "bytes": [GIB, -GIB, GIB // 2]}
    )
    (row,) = peak_end(deltas, ["kind"]).to_dicts()
    assert (row["peak"], row["peak_ts_ns"], row["end"]) == (GIB // 2, 20, GIB // 2)
    assert (row["first_ts_ns"], row["last_ts_ns"]) == (10, 20)


def test_a_level_that_only_falls_has_no_peak_instant():
    deltas = pl.DataFrame({"ts_ns": [5, 6], "cg": [1, 1], "bytes": [-4096, -4096]})
    (row,) = peak_end(deltas, ["cg"]).to_dicts()
    assert (row["peak"], row["peak_ts_ns"], row["end"]) == (0, None, -8192)


def test_peaks_of_many_interleaved_keys_match_the_definition_in_any_row_order():
    rng = random.Random(7)
    rows = [
        (rng.randrange(0, 300), rng.choice("abcde"), rng.choice([-1, 1]) * rng.randrange(1, 9))
        for _ in range(5000)
    ]
    rng.shuffle(rows)  # unsorted input: peak_end sorts by time itself
    deltas = pl.DataFrame(rows, schema=["ts_ns", "key", "bytes"], orient="row")
    got = {
        r["key"]: (r["peak"], r["peak_ts_ns"], r["end"])
        for r in peak_end(deltas, ["key"]).to_dicts()
    }
    assert got == reference(rows)
    (total,) = peak_end(deltas, []).to_dicts()
    all_rows = [(ts, "all", b) for ts, _, b in rows]
    assert (total["peak"], total["peak_ts_ns"], total["end"]) == reference(all_rows)["all"]
