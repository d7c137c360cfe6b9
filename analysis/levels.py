"""Signed byte deltas -> levels: cumulative sums per key, their peak, end, and value at an instant.

Every charge-like row (`memcg_charge`, `filemap_add`/`_delete`) is a signed delta since the
recording started, so a level is "bytes charged since the start", never an absolute figure.
"""

from __future__ import annotations

import polars as pl


def rel_s(ts_col: str, t0_ns: int) -> pl.Expr:
    """Seconds since the recording's start, to the microsecond."""
    return ((pl.col(ts_col) - t0_ns) / 1e9).round(6)


def peak_end_plan(deltas: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Per key: `peak` (highest level, at least the starting 0), `peak_ts_ns`, `end`,
    `first_ts_ns`, `last_ts_ns`. `deltas` has ts_ns, bytes and the key columns, each key's rows
    in time order.

    No sort and no group per timestamp: a running sum per key gives the level after every row;
    rows of one key that share a timestamp (one kernel bucket, or a charge split into two kinds)
    are one step, so only the last row of each timestamp is a level the memory really had."""
    level = pl.col("bytes").fill_null(0).cum_sum()
    following = pl.col("ts_ns").shift(-1)
    if keys:
        level, following = level.over(keys), following.over(keys)
    steps = deltas.with_columns(
        level.alias("level"), (pl.col("ts_ns") != following).fill_null(True).alias("step_end")
    ).filter("step_end")
    aggs = [
        pl.col("level").max().clip(lower_bound=0).alias("peak"),
        pl.col("ts_ns").get(pl.col("level").arg_max()).alias("peak_ts_ns"),
        pl.col("level").last().alias("end"),
        pl.col("ts_ns").first().alias("first_ts_ns"),
        pl.col("ts_ns").last().alias("last_ts_ns"),
    ]
    per_key = steps.group_by(keys).agg(aggs) if keys else steps.select(aggs)
    return (
        per_key.filter(pl.col("first_ts_ns").is_not_null())
        .with_columns(
            # a level that never rose above the start has no peak instant
            pl.when(pl.col("peak") > 0).then(pl.col("peak_ts_ns")).alias("peak_ts_ns")
        )
        .cast({c: pl.Int64 for c in ("peak", "peak_ts_ns", "end", "first_ts_ns", "last_ts_ns")})
    )


def peak_end(deltas: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """`peak_end_plan` of an eager frame (sorted by time here if it is not)."""
    if not deltas["ts_ns"].is_sorted():
        deltas = deltas.sort("ts_ns", maintain_order=True)
    return peak_end_plan(deltas.lazy(), keys).collect()


def level_at(deltas: pl.DataFrame, keys: list[str], ts_ns: int) -> pl.DataFrame:
    """Per key: bytes charged from the start up to and including `ts_ns`."""
    return (
        deltas.filter(pl.col("ts_ns") <= ts_ns)
        .group_by(keys)
        .agg(pl.col("bytes").sum().alias("level"))
    )


def bucket_levels(
    deltas: pl.DataFrame, key: str, t0_ns: int, t1_ns: int, buckets: int
) -> tuple[list[float], dict[str, list[int]]]:
    """Levels per key at the end of each of `buckets` equal time slices (for charts)."""
    width = max((t1_ns - t0_ns) // buckets + 1, 1)
    t_s = [((i + 1) * width) / 1e9 for i in range(buckets)]
    if deltas.is_empty():
        return t_s, {}
    sums = (
        deltas.with_columns(((pl.col("ts_ns") - t0_ns) // width).clip(0, buckets - 1).alias("b"))
        .group_by([key, "b"])
        .agg(pl.col("bytes").sum())
    )
    grid = sums.select(pl.col(key).unique()).join(
        pl.DataFrame({"b": list(range(buckets))}, schema={"b": sums.schema["b"]}), how="cross"
    )
    dense = (
        grid.join(sums, on=[key, "b"], how="left")
        .with_columns(pl.col("bytes").fill_null(0))
        .sort([key, "b"])
        .with_columns(pl.col("bytes").cum_sum().over(key).alias("level"))
        .group_by(key, maintain_order=True)
        .agg(pl.col("level"))
    )
    return t_s, {str(k): list(v) for k, v in zip(dense[key], dense["level"], strict=True)}
