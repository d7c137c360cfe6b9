"""The memory limit of the cgroup the KV cache was allocated in, and what a larger KV needs.

A fix that raises the KV size (reclaim before sizing, another signal, a larger fraction) makes
the workload allocate more. With `docker run --memory` (or any memory limit) the container is
OOM-killed when that does not fit: the advice must say so, and which limit would do.

From the `memory.current` / `memory.limit` / `memory.stat` samples of that cgroup:

  reclaimable      clean, unmapped page cache: active_file + inactive_file - dirty - writeback
                   - mapped (the split of docs/fix.md): under the limit the kernel takes it back
                   before it OOM-kills;
  held             usage - reclaimable, at the latest sample from the sizing query on where it
                   is largest (the run's peak, which includes the KV it did allocate);
  needs(kv)        held + kv - the KV the run allocated: what the limit must at least be.

Only for a KV cache the cgroup is charged for (host memory: mmap/malloc, pinned, managed):
device-only allocations (`items.CUDA_DEVICE_ALLOC_EVENTS`) never reach a memory cgroup on a
discrete GPU (docs/design.md). On a unified-memory GPU whether they do is not measured yet, so
no figure is given for them either.

The peak comes from samples (every --interval): a shorter spike between two is not seen, so the
figure needed errs low by at most what the workload allocates in one interval.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.items import CUDA_DEVICE_ALLOC_EVENTS, NO_LIMIT
from uvmtrace.analysis.load import RunData

# memory.stat keys of the clean, unmapped page cache: v2 first, v1's hierarchical ones second
_PARTS = {
    "file": (("active_file", "inactive_file"), ("total_active_file", "total_inactive_file")),
    "not_clean": (
        ("file_dirty", "file_writeback", "file_mapped"),
        ("total_dirty", "total_writeback", "total_mapped_file"),
    ),
}


def _per_sample(run: RunData, cgroup_id: int) -> pl.DataFrame:
    """ts_ns, usage, limit, reclaimable of one cgroup, one row per sample instant."""
    rows = run.samples.filter(
        (pl.col("cgroup_id") == cgroup_id)
        & pl.col("event").is_in(["memory.current", "memory.limit", "memory.stat"])
    )
    if rows.is_empty():
        return pl.DataFrame()
    items = set(rows.filter(pl.col("event") == "memory.stat")["item"].unique().to_list())
    v = 1 if "total_mapped_file" in items else 0
    file_keys, other_keys = _PARTS["file"][v], _PARTS["not_clean"][v]

    def total(event: str, keys: tuple[str, ...] | None = None) -> pl.Expr:
        hit = pl.col("event") == event
        if keys is not None:
            hit &= pl.col("item").is_in(list(keys))
        return pl.col("bytes").filter(hit).sum()

    def present(event: str) -> pl.Expr:
        return (pl.col("event") == event).any()

    out = rows.group_by("ts_ns").agg(
        total("memory.current").alias("usage"),
        total("memory.limit").alias("limit"),
        present("memory.current").alias("has_usage"),
        (total("memory.stat", file_keys) - total("memory.stat", other_keys))
        .clip(lower_bound=0)
        .alias("reclaimable"),
    )
    return out.filter(pl.col("has_usage")).drop("has_usage").sort("ts_ns")


def limit_at_query(run: RunData, kv: dict[str, Any]) -> dict[str, Any] | None:
    """The KV cgroup's memory limit around the sizing query and the memory held under it;
    None when that cgroup has no limit (or was not sampled)."""
    cgroup_id, q_ts = kv.get("cgroup_id"), kv.get("query_ts_ns")
    if cgroup_id is None or q_ts is None:
        return None
    if str(kv.get("event") or "").removesuffix("_v2") in CUDA_DEVICE_ALLOC_EVENTS:
        return None  # not charged to the cgroup: the limit does not bound it
    s = _per_sample(run, cgroup_id)
    if s.is_empty():
        return None
    limited = s.filter(pl.col("limit").is_between(1, NO_LIMIT, closed="left"))
    if limited.is_empty():
        return None
    at_query = limited.filter(pl.col("ts_ns") <= q_ts).tail(1)
    if at_query.is_empty():
        at_query = limited.head(1)
    q = at_query.row(0, named=True)
    after = limited.filter(pl.col("ts_ns") >= q["ts_ns"]).with_columns(
        (pl.col("usage") - pl.col("reclaimable")).alias("held")
    )
    peak = after.sort("held").tail(1).row(0, named=True)
    return {
        "cgroup": run.cgroup_name(cgroup_id),
        "limit_bytes": int(q["limit"]),
        "usage_at_query_bytes": int(q["usage"]),
        "reclaimable_at_query_bytes": int(q["reclaimable"]),
        # what the kernel cannot take back under the limit, at its largest from the query on
        "peak_held_bytes": int(peak["held"]),
        "peak_t_s": run.rel_s(peak["ts_ns"]),
        "kv_bytes": kv["bytes"],
    }


def needs(limit: dict[str, Any], kv_bytes: int) -> int:
    """The limit a run with a KV cache of `kv_bytes` needs at least (see the module's doc)."""
    return limit["peak_held_bytes"] + max(0, kv_bytes - limit["kv_bytes"])
