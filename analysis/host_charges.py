"""CUDA host-memory calls joined to the kernel charges they caused: the cross-stream attribution.

The driver's host memory is charged to the calling process's memory cgroup like any page, under
kinds that do not say "CUDA". Measured on an H200 (driver 580, kernel 6.18; docs/validation.md):

  pinned      cuMemHostAlloc, cuMemAllocHost: NR_SHMEM (and its NR_FILE_PAGES view) during
              the call, one page fault per 4 KiB page taken inside the kernel (get_user_pages)
  registered  cuMemHostRegister of memory never touched: NR_ANON_MAPPED during the call, the
              pages faulted in the same way; memory already resident was charged earlier (0 here)
  managed     cuMemAllocManaged: nothing at the call; MEMCG_KMEM when the CPU first touches the
              pages (the UVM driver allocates them as kernel memory), at any later time
  vmm_host    cuMemCreate on a host location: physical host memory, charged during the call
  context     cuDevicePrimaryCtxRetain / cuCtxCreate: the driver's own pinned buffers (8 MiB
              NR_SHMEM on the H200), charged during the call; no size asked (bytes null)

The join, per call, in the caller's process (pid) and the cgroup that process was charged in:
  eager calls (pinned, registered, vmm_host): the charges made during the call, [ts, ts + dur];
    an aggregated row holds a whole bucket, so the buckets that overlap the call count;
  managed: MEMCG_KMEM charged after the call and before the buffer's free (or the end), outside
    every eager call of that process, each charge given to the newest managed buffer allocated
    before it, up to the buffer's size (pages of a buffer cannot outnumber its bytes).
Items are the non-overlapping ones of items.py (NR_FILE_PAGES less its NR_SHMEM part), so
`charged_bytes` counts each page once; `unmatched_bytes` = size asked - charged.

The eager calls' charged pages are also page faults the exception tracepoints never see:
`pinned_faults` counts them per process for the fault reconciliation.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.items import KIND_PARTS
from uvmtrace.analysis.load import RunData
from uvmtrace.analysis.scope import process_cgroups

# call -> kind; cuMemCreate counts only on a host location (item `location 2:..` / `3:..`)
HOST_CALLS = {
    "cuMemHostAlloc": "pinned",
    "cuMemAllocHost": "pinned",
    "cuMemHostRegister": "registered",
    "cuMemAllocManaged": "managed",
    "cuMemCreate": "vmm_host",
    "cuDevicePrimaryCtxRetain": "context",
    "cuCtxCreate": "context",
}
EAGER_KINDS = ("pinned", "registered", "vmm_host", "context")
MANAGED_ITEM = "MEMCG_KMEM"
# The items a kind's pages can be charged as (None: any). Pinned pages are the driver's shmem
# plus its bookkeeping; anonymous memory charged in the same 100 ms bucket is the process's own
# (a numpy array filled next to JAX's staging buffer), not the call's.
KIND_ITEMS: dict[str, tuple[str, ...] | None] = {
    "pinned": ("NR_SHMEM", "NR_FILE_PAGES", MANAGED_ITEM),
    "registered": None,
    "managed": (MANAGED_ITEM,),
    "vmm_host": None,
    "context": ("NR_SHMEM", "NR_FILE_PAGES", MANAGED_ITEM),
}
HOST_LOCATION = r"^location (2|3):"  # CU_MEM_LOCATION_TYPE_HOST, HOST_NUMA
PAGE_SIZE = 4096  # a fault per page the kernel pins in (x86-64; aarch64 kernels may use 64 KiB)

# recorded item -> (item it is shown as, sign): NR_SHMEM pages also sit in NR_FILE_PAGES
_KIND_ITEM = {parts[0][0]: item for item, parts in KIND_PARTS.items() if parts[0][1] == 1}
_ITEM_PARTS = pl.DataFrame(
    [(item, _KIND_ITEM[kind], sign) for item, parts in KIND_PARTS.items() for kind, sign in parts],
    schema={"item": pl.String, "shown": pl.String, "sign": pl.Int64},
    orient="row",
)
_OUT_SCHEMA = {"call_id": pl.UInt32, "shown": pl.String, "bytes": pl.Int64}


def _calls(run: RunData) -> pl.DataFrame:
    ok = pl.col("result").is_null() | (pl.col("result") == 0)
    kind = pl.col("call").replace_strict(HOST_CALLS, default=None)
    sized = pl.col("bytes").fill_null(0) > 0
    calls = (
        run.calls.filter((pl.col("stream") == "cuda") & ok)
        .with_columns(kind.alias("kind"))
        .filter(
            pl.col("kind").is_not_null()
            & (sized | (pl.col("kind") == "context"))
            & (
                (pl.col("kind") != "vmm_host")
                | pl.col("item").fill_null("").str.contains(HOST_LOCATION)
            )
        )
        .sort("ts_ns")
        .with_row_index("call_id")
    )
    frees = run.calls.filter(
        (pl.col("stream") == "cuda") & ok & pl.col("call").is_in(["cuMemFree", "cuMemRelease"])
    ).select("pid", "addr", pl.col("ts_ns").alias("free_ts_ns"))
    # a managed buffer's window ends at the free of its address (the next one after it)
    ends = (
        calls.filter(pl.col("kind") == "managed")
        .select("call_id", "pid", "addr", "ts_ns")
        .join(frees, on=["pid", "addr"], how="inner")
        .filter(pl.col("free_ts_ns") > pl.col("ts_ns"))
        .group_by("call_id")
        .agg(pl.col("free_ts_ns").min())
    )
    return (
        calls.join(ends, on="call_id", how="left")
        .join(process_cgroups(run), on="pid", how="left")
        .with_columns(
            pl.col("dur_ns").fill_null(0),
            pl.col("free_ts_ns").fill_null(run.t_end_ns + 1),
        )
    )


def _charges(run: RunData, calls: pl.DataFrame) -> pl.DataFrame:
    """The callers' charges to their own cgroup, of the items that count in totals."""
    owner = calls.select("pid", "cgroup_id").unique().drop_nulls()
    return (
        run.charges.lazy()
        .join(owner.lazy(), on=["pid", "cgroup_id"], how="semi")
        .select("ts_ns", "pid", pl.col("item").cast(pl.String), "bytes")
        .join(_ITEM_PARTS.lazy(), on="item", how="inner")
        .select("ts_ns", "pid", "item", "shown", (pl.col("bytes") * pl.col("sign")).alias("bytes"))
        .collect()
    )


def _width(run: RunData) -> int:
    """How long one charge row lasts: a bucket when aggregated, an instant when raw."""
    bucket = run.meta.bucket_ns
    return 0 if run.meta.raw or not bucket else bucket


def _windows(calls: pl.DataFrame, width: int) -> pl.DataFrame:
    """pid, start_ns, end_ns of each eager call: a charge row at ts overlaps it when
    start_ns - width <= ts <= end_ns."""
    return calls.filter(pl.col("kind").is_in(EAGER_KINDS)).select(
        "pid",
        (pl.col("ts_ns") - width).alias("lo"),
        (pl.col("ts_ns") + pl.col("dur_ns")).alias("hi"),
    )


def _mark_eager(charges: pl.DataFrame, calls: pl.DataFrame, width: int) -> pl.DataFrame:
    """The charges with `row` and `in_eager` (made during an eager call of the same process).
    The windows are merged per process first, so one as-of join finds the one holding a charge
    (a join of every charge with every call would not fit a raw recording's millions)."""
    merged = (
        _windows(calls, width)
        .sort("pid", "lo")
        .with_columns(pl.col("hi").cum_max().over("pid").alias("reach"))
        .with_columns(
            (pl.col("lo") > pl.col("reach").shift(1).over("pid"))
            .fill_null(True)
            .cum_sum()
            .alias("group")
        )
        .group_by("pid", "group")
        .agg(pl.col("lo").min(), pl.col("hi").max())
        .drop("group")
        .sort("lo")
    )
    return (
        charges.sort("ts_ns")
        .with_row_index("row")
        .join_asof(
            merged,
            left_on="ts_ns",
            right_on="lo",
            by="pid",
            strategy="backward",
            check_sortedness=False,  # both sorted by time above
        )
        .with_columns(
            (pl.col("hi").is_not_null() & (pl.col("ts_ns") <= pl.col("hi"))).alias("in_eager")
        )
        .drop("lo", "hi")
    )


def _eager(calls: pl.DataFrame, charges: pl.DataFrame, width: int) -> pl.DataFrame:
    """Charges made during each eager call. A charge row that several calls overlap (two small
    allocations in one 100 ms bucket) is split between them by the bytes each asked for, so no
    byte is joined twice."""
    eager = calls.filter(pl.col("kind").is_in(EAGER_KINDS)).select(
        "call_id",
        "pid",
        "kind",
        # a context creation asks for no size: it gets a bucket only when no sized call shares it
        pl.col("bytes").fill_null(0).clip(lower_bound=1).alias("size"),
        pl.col("ts_ns").alias("start_ns"),
        (pl.col("ts_ns") + pl.col("dur_ns")).alias("end_ns"),
    )
    allowed = pl.DataFrame(
        [(k, i) for k, items in KIND_ITEMS.items() if items for i in items],
        schema={"kind": pl.String, "shown": pl.String},
        orient="row",
    )
    restricted = [k for k, items in KIND_ITEMS.items() if items]
    joined = (
        charges.filter(pl.col("in_eager"))
        .join(eager, on="pid", how="inner")
        .filter(
            (pl.col("ts_ns") <= pl.col("end_ns")) & (pl.col("ts_ns") + width >= pl.col("start_ns"))
        )
    )
    joined = pl.concat(
        [
            joined.filter(~pl.col("kind").is_in(restricted)),
            joined.join(allowed, on=["kind", "shown"], how="semi"),
        ]
    )
    share = pl.col("size") / pl.col("size").sum().over("row")
    return (
        joined.with_columns((pl.col("bytes") * share).alias("bytes"))
        .group_by("call_id", "shown")
        .agg(pl.col("bytes").sum().round().cast(pl.Int64))
    )


def _managed(calls: pl.DataFrame, charges: pl.DataFrame, width: int) -> pl.DataFrame:
    managed = calls.filter(pl.col("kind") == "managed").select(
        "call_id", "pid", "ts_ns", "free_ts_ns", pl.col("bytes").alias("size")
    )
    if managed.is_empty():
        return pl.DataFrame(schema=_OUT_SCHEMA)
    # charges made during an eager call of the same process are that call's
    kmem = charges.filter((pl.col("item") == MANAGED_ITEM) & ~pl.col("in_eager"))
    joined = (
        kmem.join_asof(
            managed.sort("ts_ns").rename({"ts_ns": "alloc_ns"}),
            left_on="ts_ns",
            right_on="alloc_ns",
            by="pid",
            strategy="backward",
            check_sortedness=False,  # both sorted by time above
        )
        .filter(pl.col("call_id").is_not_null() & (pl.col("ts_ns") + width < pl.col("free_ts_ns")))
        .group_by("call_id", "shown")
        .agg(pl.col("bytes").sum(), pl.col("size").first())
        .select("call_id", "shown", pl.min_horizontal("bytes", "size").alias("bytes"))
    )
    return joined


def join_host_charges(run: RunData) -> pl.DataFrame:
    """One row per host-memory call: call_id, kind, call, pid, ts_ns, dur_ns, bytes, addr, caller,
    cgroup_id, items (list of {item, bytes}), charged_bytes. Cached on the run, with the joined
    charges per call and item (`host_charge_items`)."""
    if "host_charges" in run.derived:
        return run.derived["host_charges"]
    calls = _calls(run)
    if calls.is_empty() or run.charges.is_empty():
        joined = pl.DataFrame(schema=_OUT_SCHEMA)
    else:
        width = _width(run)
        charges = _mark_eager(_charges(run, calls), calls, width)
        eager = _eager(calls, charges, width)
        joined = pl.concat([eager, _managed(calls, charges, width)], how="vertical_relaxed")
    per_call = (
        joined.filter(pl.col("bytes") != 0)
        .sort("call_id", "bytes", descending=[False, True])
        .group_by("call_id", maintain_order=True)
        .agg(
            pl.struct(pl.col("shown").alias("item"), "bytes").alias("items"),
            pl.col("bytes").sum().alias("charged_bytes"),
        )
    )
    out = (
        calls.join(per_call, on="call_id", how="left")
        .with_columns(pl.col("charged_bytes").fill_null(0))
        # a context creation that charged nothing (the primary context retained again) is noise
        .filter((pl.col("kind") != "context") | (pl.col("charged_bytes") != 0))
        .select(
            "call_id", "kind", "call", "pid", "ts_ns", "dur_ns", "bytes", "addr", "caller",
            "cgroup_id", "items", "charged_bytes",
        )
    )  # fmt: skip
    run.derived["host_charges"] = out
    run.derived["host_charge_items"] = joined
    return out


def pinned_faults(run: RunData) -> pl.DataFrame:
    """pid, faults: pages the eager calls had charged, each faulted in by the kernel on the
    process's behalf (get_user_pages while the driver pins them): counted in /proc/PID/stat
    minflt, never seen by the exception tracepoints. Measured: 262,148 minflt during a 1 GiB
    cuMemHostAlloc (262,144 pages), 131,076 during a 512 MiB cuMemHostRegister."""
    calls = join_host_charges(run).filter(pl.col("kind").is_in(EAGER_KINDS))
    pages = run.derived["host_charge_items"].filter(pl.col("shown") != MANAGED_ITEM)
    return (
        pages.join(calls.select("call_id", "pid"), on="call_id", how="inner")
        .group_by("pid")
        .agg((pl.col("bytes").sum().clip(lower_bound=0) // PAGE_SIZE).alias("pinned_faults"))
    )


def _caller_module(caller: str | None) -> str | None:
    return caller.split("!", 1)[0] if caller else None


def host_charges(run: RunData) -> list[dict[str, Any]]:
    """The JSON list `cuda_memory.host_charges`, in time order."""
    rows = join_host_charges(run).sort("ts_ns").to_dicts()
    out = []
    for r in rows:  # one per CUDA host-memory call: a handful, not a row per event
        items = {i["item"]: int(i["bytes"]) for i in r["items"] or []}
        size = None if r["bytes"] is None else int(r["bytes"])
        out.append(
            {
                "call": r["call"],
                "kind": r["kind"],
                "bytes": size,
                "pid": r["pid"],
                "t_s": run.rel_s(r["ts_ns"]),
                "dur_s": r["dur_ns"] / 1e9,
                "addr": r["addr"],
                "caller": r["caller"],
                "caller_module": _caller_module(r["caller"]),
                "items": items,
                "charged_bytes": int(r["charged_bytes"]),
                "unmatched_bytes": None if size is None else size - int(r["charged_bytes"]),
                "cgroup_id": r["cgroup_id"],
                "cgroup": run.cgroup_path(r["cgroup_id"]) or run.cgroup_name(r["cgroup_id"]),
            }
        )
    return out


def by_kind(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """kind -> {calls, bytes asked, charged_bytes}: what a diff compares."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        k = out.setdefault(r["kind"], {"calls": 0, "bytes": 0, "charged_bytes": 0})
        k["calls"] += 1
        k["bytes"] += r["bytes"] or 0
        k["charged_bytes"] += r["charged_bytes"]
    return out
