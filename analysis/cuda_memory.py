"""CUDA memory the traced processes held, from the shim's allocation and release calls: by kind
(device, vmm, pool, pinned_host, managed, registered_host; items.CUDA_MEMORY_KIND), by calling
library (the module the call came from) and by process, peak and end, and over time.

A release carries the pointer (a VMM handle for cuMemRelease), not the size: it is matched to the
last allocation of the same address in the same process. Failed calls hold nothing.
`device_bytes_*` count device + vmm + pool: the GPU memory the processes' allocators hold (for
PyTorch's caching allocator, its `memory_reserved()`); a stream-ordered pool counts what was
allocated from it, not what the pool keeps in reserve.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.items import (
    CUDA_MEMORY_KIND,
    CUDA_MEMORY_KINDS,
    CUDA_RELEASE_EVENTS,
    DEVICE_MEMORY_KINDS,
    VMM_DEVICE_LOCATION,
)
from uvmtrace.analysis.levels import bucket_levels, peak_end
from uvmtrace.analysis.load import RunData

_DELTA_SCHEMA = {
    "ts_ns": pl.Int64,
    "pid": pl.Int32,
    "comm": pl.String,
    "kind": pl.String,
    "caller": pl.String,
    "bytes": pl.Int64,
}
NO_PID = -1  # join key for records whose host pid is unknown


def cuda_allocations(run: RunData) -> pl.DataFrame:
    """Every successful CUDA allocation: ts_ns, pid, comm, call, kind, caller (module), addr,
    bytes. Built once per run (sizing, the deltas below)."""
    if "cuda_allocations" not in run.derived:
        run.derived["cuda_allocations"] = _allocations(run)
    return run.derived["cuda_allocations"]


def _allocations(run: RunData) -> pl.DataFrame:
    ok = pl.col("result").is_null() | (pl.col("result") == 0)
    host_vmm = (pl.col("call") == "cuMemCreate") & ~pl.col("item").fill_null(
        VMM_DEVICE_LOCATION
    ).str.starts_with(VMM_DEVICE_LOCATION)
    return run.calls.filter(
        (pl.col("stream") == "cuda")
        & ok
        & pl.col("call").is_in(list(CUDA_MEMORY_KIND))
        & (pl.col("bytes") > 0)
    ).select(
        "ts_ns",
        "pid",
        "comm",
        "call",
        pl.when(host_vmm)
        .then(pl.lit("pinned_host"))
        .otherwise(pl.col("call").replace_strict(CUDA_MEMORY_KIND, default=None))
        .alias("kind"),
        pl.col("caller").str.split("!").list.first().fill_null("?").alias("caller"),
        "addr",
        "bytes",
    )


def cuda_deltas(run: RunData) -> pl.DataFrame:
    """ts_ns, pid, comm, kind, caller, bytes: + at each allocation, - at its release, in time
    order. Built once per run: cuda_memory, sizing's "used" and reconcile read it."""
    if "cuda_deltas" not in run.derived:
        run.derived["cuda_deltas"] = _deltas(run)
    return run.derived["cuda_deltas"]


def _deltas(run: RunData) -> pl.DataFrame:
    ok = pl.col("result").is_null() | (pl.col("result") == 0)
    allocs = cuda_allocations(run).with_columns(pl.col("pid").fill_null(NO_PID).alias("pkey"))
    releases = run.calls.filter(
        (pl.col("stream") == "cuda")
        & ok
        & pl.col("call").is_in(sorted(CUDA_RELEASE_EVENTS))
        & pl.col("addr").is_not_null()
        & (pl.col("addr") != 0)
    ).select("ts_ns", pl.col("pid").fill_null(NO_PID).alias("pkey"), "addr")
    plus = allocs.select(list(_DELTA_SCHEMA))
    if releases.is_empty() or allocs.is_empty():
        return plus.cast(_DELTA_SCHEMA).sort("ts_ns", maintain_order=True)
    minus = (
        releases.sort("ts_ns")
        .join_asof(
            allocs.rename({"ts_ns": "a_ts_ns"}).sort("a_ts_ns"),
            left_on="ts_ns",
            right_on="a_ts_ns",
            by=["pkey", "addr"],
            strategy="backward",
            check_sortedness=False,
        )
        .filter(pl.col("bytes").is_not_null())
        .select("ts_ns", "pid", "comm", "kind", "caller", (-pl.col("bytes")).alias("bytes"))
    )
    return (
        pl.concat([plus.cast(_DELTA_SCHEMA), minus.cast(_DELTA_SCHEMA)])
        .sort("ts_ns", maintain_order=True)
        .set_sorted("ts_ns")
    )


def device_deltas(run: RunData) -> pl.DataFrame:
    """ts_ns, pid, bytes of device memory (device + vmm + pool) only."""
    d = cuda_deltas(run)
    return d.filter(pl.col("kind").is_in(sorted(DEVICE_MEMORY_KINDS))).select(
        "ts_ns", "pid", "bytes"
    )


def device_bytes_at(run: RunData, ts_ns: int) -> int:
    """Device memory allocated through CUDA and not yet released at `ts_ns`."""
    deltas = device_deltas(run)
    return int(deltas.filter(pl.col("ts_ns") <= ts_ns)["bytes"].sum() or 0)


def process_device_peak_before(run: RunData) -> pl.DataFrame:
    """pid, ts_ns, peak_so_far: after every device-memory change of a process, the most device
    memory it had held up to then (what vLLM calls the memory a profiling run used)."""
    d = device_deltas(run).with_columns(pl.col("pid").fill_null(NO_PID))
    return (
        d.with_columns(pl.col("bytes").cum_sum().over("pid").alias("level"))
        .with_columns(pl.col("level").cum_max().over("pid").alias("peak_so_far"))
        .select("pid", "ts_ns", "peak_so_far")
    )


def _rows(deltas: pl.DataFrame, key: str) -> list[dict[str, Any]]:
    if deltas.is_empty():
        return []
    pe = peak_end(deltas, [key]).sort(["peak", key], descending=[True, False])
    return [
        {key: r[key], "peak_bytes": r["peak"], "end_bytes": r["end"]}
        for r in pe.iter_rows(named=True)
    ]


def cuda_memory(run: RunData, buckets: int = 300) -> dict[str, Any]:
    """The `cuda_memory` section of a report (without a CUDA stream: traced false, figures
    null: nothing says the run held no CUDA memory)."""
    if "cuda" not in run.streams:
        return {
            "traced": False,
            "device_bytes_peak": None,
            "device_bytes_end": None,
            "allocations": 0,
            "by_kind": [],
            "by_caller": [],
            "by_process": [],
            "timeline": None,
        }
    deltas = cuda_deltas(run)
    device = deltas.filter(pl.col("kind").is_in(sorted(DEVICE_MEMORY_KINDS)))
    total = peak_end(device, []) if not device.is_empty() else None
    order = {k: i for i, k in enumerate(CUDA_MEMORY_KINDS)}
    by_kind = sorted(_rows(deltas, "kind"), key=lambda r: order.get(r["kind"], len(order)))
    per_process = (
        peak_end(device.with_columns(pl.col("pid").fill_null(NO_PID)), ["pid"])
        if not device.is_empty()
        else pl.DataFrame(schema={"pid": pl.Int32, "peak": pl.Int64, "end": pl.Int64})
    )
    all_kinds = (
        peak_end(deltas.with_columns(pl.col("pid").fill_null(NO_PID)), ["pid", "kind"])
        if not deltas.is_empty()
        else pl.DataFrame(schema={"pid": pl.Int32, "kind": pl.String})
    )
    comms = (
        deltas.group_by(pl.col("pid").fill_null(NO_PID))
        .agg(pl.col("comm").drop_nulls().last())
        .rows()
    )
    comm_of = dict(comms)
    by_process = []
    for pid in sorted(set(all_kinds["pid"].to_list())):
        dev = per_process.filter(pl.col("pid") == pid)
        kinds = all_kinds.filter(pl.col("pid") == pid).sort("kind")
        by_process.append(
            {
                "pid": None if pid == NO_PID else pid,
                "comm": comm_of.get(pid),
                "device_peak_bytes": int(dev["peak"][0]) if dev.height else 0,
                "device_end_bytes": int(dev["end"][0]) if dev.height else 0,
                "by_kind": [
                    {"kind": r["kind"], "peak_bytes": r["peak"], "end_bytes": r["end"]}
                    for r in kinds.iter_rows(named=True)
                ],
            }
        )
    t_s, levels = bucket_levels(deltas, "kind", run.t0_ns, run.t_end_ns, buckets)
    return {
        "traced": True,
        "device_bytes_peak": int(total["peak"][0]) if total is not None else 0,
        "device_bytes_end": int(total["end"][0]) if total is not None else 0,
        "allocations": int((deltas["bytes"] > 0).sum()),
        "by_kind": by_kind,
        "by_caller": _rows(deltas, "caller"),
        "by_process": by_process,
        "timeline": {
            "t_s": t_s,
            "by_kind": {k: levels[k] for k in CUDA_MEMORY_KINDS if k in levels},
        },
    }


def cuda_memory_difference(a: RunData, b: RunData, ta: int, tb: int) -> dict[str, Any]:
    """CUDA memory B held more than A at the compared instants, by kind and by library."""

    def at(run: RunData, ts: int, key: str) -> pl.DataFrame:
        return (
            cuda_deltas(run)
            .filter(pl.col("ts_ns") <= ts)
            .group_by(key)
            .agg(pl.col("bytes").sum().alias("level"))
        )

    out: dict[str, Any] = {}
    for key in ("kind", "caller"):
        joined = (
            at(a, ta, key)
            .rename({"level": "a_bytes"})
            .join(at(b, tb, key).rename({"level": "b_bytes"}), on=key, how="full", coalesce=True)
            .with_columns(pl.col("a_bytes").fill_null(0), pl.col("b_bytes").fill_null(0))
            .with_columns((pl.col("b_bytes") - pl.col("a_bytes")).alias("difference"))
            .filter(pl.col("difference") != 0)
            .sort([pl.col("difference").abs(), key], descending=[True, False])
        )
        out[f"by_{key}"] = joined.rename({key: "key"}).to_dicts()
    device = sorted(DEVICE_MEMORY_KINDS)
    out["device_difference_bytes"] = int(
        sum(r["difference"] for r in out["by_kind"] if r["key"] in device)
    )
    return out
