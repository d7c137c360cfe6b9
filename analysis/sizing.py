"""KV-sizing inference: which memory query's answer, times which fraction, gave each large
allocation its size; and how far that answer was from what the process could really use.

Frameworks size the KV cache as `fraction x free` right after asking for free memory
(DESIGN.md). For every large allocation we take, per signal, the last query of that signal the
same process made before it (`join_asof` by pid and signal), and call the allocation explained
when `bytes / free` is within `tolerance` of a fraction frameworks use. The signals:

  cuMemGetInfo, nvmlDeviceGetMemoryInfo, sysinfo   (shim and kernel stream; the value returned)
  MemFree / MemAvailable (/proc/meminfo)  an `openat` of /proc/meminfo, valued by the nearest
                                          meminfo sample (the probe sees the open, not the read)
  cgroup headroom (memory.* files)        an `openat` of a cgroup memory file, valued as
                                          limit - usage of the process's cgroup, nearest sample
"""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.items import (
    CUDA_ALLOC_EVENTS,
    CUDA_QUERY_SIGNAL,
    KNOWN_FRACTIONS,
    NO_LIMIT,
    SIGNAL_HEADROOM,
    SIGNAL_MEMAVAILABLE,
    SIGNAL_MEMFREE,
    SYSTEM_SIGNALS,
)
from uvmtrace.analysis.levels import rel_s
from uvmtrace.analysis.load import RunData
from uvmtrace.analysis.scope import command_pids, process_cgroups

DEFAULT_MIN_ALLOC = 256 << 20
# When two signals fit equally (the shim's and the kernel's view of one sysinfo() call, or a
# cuMemGetInfo that returns MemFree), name the one closest to the framework's own call.
SIGNAL_ORDER = {
    s: i
    for i, s in enumerate(
        [
            "cuMemGetInfo",
            "nvmlDeviceGetMemoryInfo",
            "sysinfo",
            SIGNAL_MEMFREE,
            SIGNAL_MEMAVAILABLE,
            SIGNAL_HEADROOM,
        ]
    )
}
DEFAULT_TOLERANCE = 0.003  # |bytes/free - fraction|; block rounding stays far below this
MAP_ANONYMOUS = 0x20

_QUERY_SCHEMA = {
    "q_ts_ns": pl.Int64,
    "pid": pl.Int32,
    "signal": pl.String,
    "free_bytes": pl.Int64,
}


def large_allocations(run: RunData, min_bytes: int = DEFAULT_MIN_ALLOC) -> pl.DataFrame:
    """CUDA allocations and anonymous host mmaps of at least `min_bytes`: ts_ns, pid, event,
    source, bytes."""
    ok = pl.col("result").is_null() | (pl.col("result") == 0)
    cuda = run.calls.filter(
        (pl.col("stream") == "cuda")
        & pl.col("call").is_in(sorted(CUDA_ALLOC_EVENTS))
        & (pl.col("bytes") >= min_bytes)
        & ok
    ).select("ts_ns", "pid", pl.col("call").alias("event"), pl.lit("cuda").alias("source"), "bytes")
    anonymous = pl.col("flags").is_null() | ((pl.col("flags") & MAP_ANONYMOUS) != 0)
    # PROT_NONE reserves address space, not memory (Go's heap arenas, glibc's thread arenas)
    memory = pl.col("item").is_null() | ~pl.col("item").str.starts_with("---")
    host = run.mappings.filter(
        (pl.col("event") == "mmap")
        & pl.col("path").is_null()
        & anonymous
        & memory
        & (pl.col("bytes") >= min_bytes)
        & (pl.col("result").is_null() | (pl.col("result") >= 0))
    ).select("ts_ns", "pid", "event", pl.lit("kernel").alias("source"), "bytes")
    return pl.concat([cuda, host]).sort("ts_ns").with_row_index("alloc")


def split_by_scope(run: RunData, allocs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(allocations of the traced command's processes, allocations of other processes)."""
    pids = command_pids(run)
    if pids is None:
        return allocs, allocs.clear()
    inside = pl.col("pid").is_in(sorted(pids))
    return allocs.filter(inside), allocs.filter(~inside | pl.col("pid").is_null())


def default_cgroup(run: RunData) -> int | None:
    targets = run.metadata.get("target_cgroups") or []
    return int(targets[0]) if targets else None


def meminfo_series(run: RunData, item: str) -> pl.DataFrame:
    return (
        run.samples.filter((pl.col("event") == "meminfo") & (pl.col("item") == item))
        .select(pl.col("ts_ns").alias("s_ts_ns"), pl.col("bytes").alias(item))
        .sort("s_ts_ns")
    )


def headroom_series(run: RunData) -> pl.DataFrame:
    """limit - usage per cgroup and sample: s_ts_ns, cgroup_id, headroom (null: no limit)."""
    cur = run.samples.filter(pl.col("event") == "memory.current").select(
        pl.col("ts_ns").alias("s_ts_ns"), "cgroup_id", pl.col("bytes").alias("current")
    )
    lim = run.samples.filter(pl.col("event") == "memory.limit").select(
        pl.col("ts_ns").alias("l_ts_ns"), "cgroup_id", pl.col("bytes").alias("limit")
    )
    if cur.is_empty() or lim.is_empty():
        return pl.DataFrame(
            schema={"s_ts_ns": pl.Int64, "cgroup_id": pl.UInt64, "headroom": pl.Int64}
        )
    joined = cur.sort("s_ts_ns").join_asof(
        lim.sort("l_ts_ns"),
        left_on="s_ts_ns",
        right_on="l_ts_ns",
        by="cgroup_id",
        strategy="nearest",
        check_sortedness=False,
    )
    unlimited = pl.col("limit").is_null() | (pl.col("limit") >= NO_LIMIT)
    return joined.select(
        "s_ts_ns",
        "cgroup_id",
        pl.when(unlimited)
        .then(None)
        .otherwise(pl.col("limit") - pl.col("current"))
        .alias("headroom"),
    )


def _with_cgroup(frame: pl.DataFrame, run: RunData) -> pl.DataFrame:
    fallback = default_cgroup(run)
    return frame.join(process_cgroups(run), on="pid", how="left").with_columns(
        pl.col("cgroup_id").fill_null(pl.lit(fallback, dtype=pl.UInt64))
    )


def _at(frame: pl.DataFrame, series: pl.DataFrame, ts: str, by: str | None = None) -> pl.DataFrame:
    """Join the nearest sample of `series` to each row of `frame` at time `ts`."""
    if series.is_empty():
        cols = [c for c in series.columns if c not in ("s_ts_ns", by)]
        return frame.with_columns([pl.lit(None, dtype=series.schema[c]).alias(c) for c in cols])
    return (
        frame.sort(ts)
        .join_asof(
            series,
            left_on=ts,
            right_on="s_ts_ns",
            by=by,
            strategy="nearest",
            check_sortedness=False,
        )
        .drop("s_ts_ns")
    )


def memory_queries(run: RunData) -> pl.DataFrame:
    """Every memory query with the value it answered: q_ts_ns, pid, signal, free_bytes."""
    ok = pl.col("result").is_null() | (pl.col("result") == 0)
    direct = run.calls.filter(
        pl.col("call").is_in(list(CUDA_QUERY_SIGNAL)) & pl.col("free_bytes").is_not_null() & ok
    ).select(
        pl.col("ts_ns").alias("q_ts_ns"),
        "pid",
        pl.col("call").replace_strict(CUDA_QUERY_SIGNAL).alias("signal"),
        "free_bytes",
    )
    opens = run.calls.filter(
        (pl.col("stream") == "kernel") & (pl.col("call") == "openat") & pl.col("path").is_not_null()
    ).select(pl.col("ts_ns").alias("q_ts_ns"), "pid", "path")
    meminfo_reads = opens.filter(pl.col("path") == "/proc/meminfo")
    parts = [direct]
    for item, signal in (("MemFree", SIGNAL_MEMFREE), ("MemAvailable", SIGNAL_MEMAVAILABLE)):
        series = meminfo_series(run, item)
        if meminfo_reads.is_empty() or series.is_empty():
            continue
        parts.append(
            _at(meminfo_reads, series, "q_ts_ns").select(
                "q_ts_ns", "pid", pl.lit(signal).alias("signal"), pl.col(item).alias("free_bytes")
            )
        )
    cgroup_reads = opens.filter(
        pl.col("path").str.starts_with("/sys/fs/cgroup")
        & pl.col("path").str.contains(r"/memory\.[^/]*$")
    )
    headroom = headroom_series(run)
    if not cgroup_reads.is_empty() and not headroom.is_empty():
        parts.append(
            _at(_with_cgroup(cgroup_reads, run), headroom, "q_ts_ns", by="cgroup_id").select(
                "q_ts_ns",
                "pid",
                pl.lit(SIGNAL_HEADROOM).alias("signal"),
                pl.col("headroom").alias("free_bytes"),
            )
        )
    return pl.concat([p.cast(_QUERY_SCHEMA) for p in parts]).filter(
        pl.col("free_bytes").is_not_null() & (pl.col("free_bytes") > 0)
    )


def infer_sizing(
    run: RunData,
    min_bytes: int = DEFAULT_MIN_ALLOC,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    allocs, strangers = split_by_scope(run, large_allocations(run, min_bytes))
    # renumbered so that `alloc` stays a dense index of the candidates
    allocs = allocs.drop("alloc").with_row_index("alloc")
    outside = _outside(run, strangers)
    queries = memory_queries(run).sort("q_ts_ns")
    signals = queries.select("signal").unique()
    if allocs.is_empty():
        return {
            "allocations": [],
            "kv": None,
            "min_alloc_bytes": min_bytes,
            "tolerance": tolerance,
            "log_kv": log_kv(run),
            "log_unparsed": log_unparsed(run),
            "outside_command": outside,
        }

    # each allocation x each signal -> that signal's last query before it, same process
    pairs = (
        allocs.join(signals, how="cross")
        .sort("ts_ns")
        .join_asof(
            queries,
            left_on="ts_ns",
            right_on="q_ts_ns",
            by=["pid", "signal"],
            strategy="backward",
            check_sortedness=False,
        )
        .filter(pl.col("q_ts_ns").is_not_null())
        .with_columns((pl.col("bytes") / pl.col("free_bytes")).alias("ratio"))
    )
    fractions = pl.DataFrame({"fraction": list(KNOWN_FRACTIONS)})
    fitted = (
        pairs.join(fractions, how="cross")
        .with_columns((pl.col("ratio") - pl.col("fraction")).abs().alias("miss"))
        .sort("miss")
        .group_by("alloc", "signal", maintain_order=True)
        .first()
        .with_columns((pl.col("miss") <= tolerance).alias("fits"))
    )
    # the closest fit wins; among equal fits the latest query, then the signal order above
    rank = pl.col("signal").replace_strict(SIGNAL_ORDER, default=len(SIGNAL_ORDER))
    best = (
        fitted.filter(pl.col("fits"))
        .with_columns(rank.alias("rank"))
        .sort(["miss", "q_ts_ns", "rank"], descending=[False, True, False])
        .group_by("alloc", maintain_order=True)
        .agg(pl.col("signal").first().alias("best_signal"), pl.col("signal").alias("fitting"))
    )

    # what the process could really use at the allocation instant
    context = _with_cgroup(allocs, run)
    context = _at(context, headroom_series(run), "ts_ns", by="cgroup_id")
    for item in ("MemAvailable", "MemFree"):
        context = _at(context, meminfo_series(run, item), "ts_ns")
    context = context.join(best, on="alloc", how="left").sort("alloc")

    detail = fitted.join(
        context.select("alloc", "headroom", "MemAvailable"), on="alloc", how="left"
    ).with_columns(
        rel_s("q_ts_ns", run.t0_ns).alias("query_t_s"),
        (pl.col("free_bytes") - pl.col("headroom")).alias("minus_headroom"),
        (pl.col("free_bytes") - pl.col("MemAvailable")).alias("minus_mem_available"),
        pl.col("ratio").round(6),
    )

    signal_cols = [
        "signal",
        "query_t_s",
        "free_bytes",
        "ratio",
        "minus_headroom",
        "minus_mem_available",
    ]
    per_alloc = detail.group_by("alloc").agg(
        pl.struct(signal_cols)
        .sort_by(["q_ts_ns", "signal"], descending=[True, False])
        .alias("signals")
    )
    chosen = detail.select(
        "alloc",
        pl.col("signal").alias("best_signal"),
        "fraction",
        "ratio",
        "query_t_s",
        pl.col("q_ts_ns").alias("query_ts_ns"),
        pl.col("free_bytes").alias("query_free_bytes"),
    )
    table = (
        context.join(chosen, on=["alloc", "best_signal"], how="left")
        .join(per_alloc, on="alloc", how="left")
        .sort("alloc")
        .select(
            rel_s("ts_ns", run.t0_ns).alias("t_s"),
            "ts_ns",
            "pid",
            "event",
            "source",
            "bytes",
            pl.col("best_signal").is_not_null().alias("explained"),
            pl.col("best_signal").alias("signal"),
            "fraction",
            "ratio",
            "query_t_s",
            "query_ts_ns",
            "query_free_bytes",
            pl.col("fitting")
            .list.set_difference(pl.concat_list("best_signal"))
            .fill_null([])
            .alias("also_fits"),
            "cgroup_id",
            pl.col("headroom").alias("headroom_bytes"),
            pl.col("MemAvailable").alias("mem_available_bytes"),
            pl.col("MemFree").alias("mem_free_bytes"),
            pl.col("signals").fill_null([]),
        )
    )
    out = table.to_dicts()
    for a in out:
        a["cgroup"] = run.cgroup_name(a["cgroup_id"])
    explained = [a for a in out if a["explained"]]
    kv = max(explained, key=lambda a: a["bytes"]) if explained else None
    if kv is not None:
        kv["what_if"] = _what_if(kv, _own_page_cache(run, kv))
    return {
        "allocations": out,
        "kv": kv,
        "min_alloc_bytes": min_bytes,
        "tolerance": tolerance,
        "log_kv": log_kv(run),
        "log_unparsed": log_unparsed(run),
        "outside_command": outside,
    }


def _outside(run: RunData, strangers: pl.DataFrame) -> list[dict[str, Any]]:
    """Large allocations of processes outside the traced command: never KV candidates, listed
    so a reader sees what was left out (pid, comm, event, bytes, t_s)."""
    if strangers.is_empty():
        return []
    pids = strangers["pid"].unique().drop_nulls().implode()
    named = [
        run.proc.filter(pl.col("pid").is_in(pids) & pl.col("comm").is_not_null()),
        run.charges.filter(pl.col("pid").is_in(pids) & pl.col("comm").is_not_null()),
    ]
    comm_of: dict[int, str] = {}
    for frame in reversed(named):  # the proc stream's name (after exec) wins
        comm_of |= dict(
            frame.group_by("pid").agg(pl.col("comm").cast(pl.String).last()).iter_rows()
        )
    return [
        {
            "t_s": run.rel_s(r["ts_ns"]),
            "pid": r["pid"],
            "comm": comm_of.get(r["pid"]),
            "event": r["event"],
            "bytes": r["bytes"],
        }
        for r in strangers.sort("ts_ns").iter_rows(named=True)
    ]


def _what_if(kv: dict[str, Any], own_page_cache: int | None) -> list[dict[str, Any]]:
    """The KV size each other signal would have given with the same fraction, and the signal's
    own with the command's page cache dropped first (a MemFree-like signal counts it as used)."""
    f = kv["fraction"]
    values = {s["signal"]: s["free_bytes"] for s in kv["signals"]}
    values.setdefault("MemAvailable (at the allocation)", kv["mem_available_bytes"])
    values.setdefault("MemFree (at the allocation)", kv["mem_free_bytes"])
    values.setdefault("cgroup headroom (at the allocation)", kv["headroom_bytes"])
    if own_page_cache and kv["query_free_bytes"] is not None:
        name = f"{kv['signal']} + the command's own page cache, dropped before sizing"
        values[name] = kv["query_free_bytes"] + own_page_cache
    return [
        {"signal": name, "value_bytes": v, "kv_bytes": int(f * v)}
        for name, v in values.items()
        if v is not None
    ]


def _own_page_cache(run: RunData, kv: dict[str, Any]) -> int | None:
    """Page cache (shmem excluded) charged to the command's cgroups at the sizing query, when
    the signal counts system memory: what `echo 1 > drop_caches` for its files would free.
    None for a device-memory signal on a discrete GPU, which page cache does not move."""
    from uvmtrace.analysis.host_memory import host_memory_at

    unified = bool((run.metadata.get("gpu") or {}).get("unified_memory"))
    if kv["signal"] not in SYSTEM_SIGNALS and not unified:
        return None
    held = host_memory_at(run, kv["query_ts_ns"])
    return (held or {}).get("by_kind", {}).get("file") or None


def log_unparsed(run: RunData, examples: int = 3) -> dict[str, Any]:
    """The framework lines that named the KV cache with a figure in a format uvmtrace does not
    know (`log_unparsed`): counted, so that a missed statement is never a silent one."""
    lines = run.logs.filter(pl.col("event") == "log_unparsed").sort("ts_ns")
    return {
        "count": lines.height,
        "examples": lines.head(examples).get_column("text").to_list(),
    }


def log_kv(run: RunData) -> dict[str, Any] | None:
    """The framework's own statement of its KV cache (last `kv_cache` log line), if any."""
    lines = run.logs.filter((pl.col("event") == "kv_cache") & pl.col("bytes").is_not_null())
    if lines.is_empty():
        return None
    row = lines.sort("ts_ns").tail(1).to_dicts()[0]
    return {
        "t_s": run.rel_s(row["ts_ns"]),
        "framework": row["item"],
        "bytes": row["bytes"],
        "text": row["text"],
    }
