"""CUDA device memory the traced process held: allocations as signed deltas, frees matched to
the allocation of the same address (a free carries the pointer, not the size)."""

from __future__ import annotations

import polars as pl

from uvmtrace.analysis.items import CUDA_DEVICE_ALLOC_EVENTS, CUDA_FREE_EVENTS
from uvmtrace.analysis.load import RunData


def device_deltas(run: RunData) -> pl.DataFrame:
    """ts_ns, pid, bytes: + at each device allocation, - at the free of it."""
    ok = pl.col("result").is_null() | (pl.col("result") == 0)
    cuda = run.calls.filter((pl.col("stream") == "cuda") & ok)
    allocs = cuda.filter(
        pl.col("call").is_in(sorted(CUDA_DEVICE_ALLOC_EVENTS)) & pl.col("bytes").is_not_null()
    ).select("ts_ns", "pid", "addr", "bytes")
    frees = cuda.filter(
        pl.col("call").is_in(sorted(CUDA_FREE_EVENTS)) & pl.col("addr").is_not_null()
    ).select("ts_ns", "pid", "addr")
    if frees.is_empty() or allocs.is_empty():
        return allocs.drop("addr")
    matched = (
        frees.sort("ts_ns")
        .join_asof(
            allocs.sort("ts_ns").rename({"ts_ns": "a_ts_ns"}).drop("pid"),
            left_on="ts_ns",
            right_on="a_ts_ns",
            by="addr",
            strategy="backward",
            check_sortedness=False,
        )
        .filter(pl.col("bytes").is_not_null())
        .select("ts_ns", "pid", (-pl.col("bytes")).alias("bytes"))
    )
    return pl.concat([allocs.drop("addr"), matched])


def device_bytes_at(run: RunData, ts_ns: int) -> int:
    """Device memory allocated through CUDA and not yet freed at `ts_ns`."""
    deltas = device_deltas(run)
    return int(deltas.filter(pl.col("ts_ns") <= ts_ns)["bytes"].sum() or 0)
