"""Attribution: bytes charged since the start, by cgroup, kind, item, process and file.

The memcg tracepoints fire for the cgroup a page is charged to (its ancestors' memory.stat
show it too, through rstat, but without an event), so each charge is attributed to the cgroup of
its event and summing over cgroups counts nothing twice. Totals use the non-overlapping kinds of
items.py; the per-item table shows every item as recorded.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.items import KIND_PARTS, KINDS
from uvmtrace.analysis.levels import bucket_levels, peak_end, rel_s
from uvmtrace.analysis.load import RunData

_KIND_MAP = pl.DataFrame(
    [(item, kind, sign) for item, parts in KIND_PARTS.items() for kind, sign in parts],
    schema={"item": pl.String, "kind": pl.String, "sign": pl.Int64},
    orient="row",
)


def kind_charges(run: RunData) -> pl.DataFrame:
    """memcg charges as non-overlapping kinds: ts_ns, cgroup_id, pid, comm, kind, bytes."""
    return (
        run.charges.join(_KIND_MAP, on="item", how="inner")
        .with_columns((pl.col("bytes") * pl.col("sign")).alias("bytes"))
        .select("ts_ns", "cgroup_id", "pid", "comm", "kind", "bytes")
    )


def file_deltas(run: RunData) -> pl.DataFrame:
    """Page-cache pages per file as signed deltas: ts_ns, path, cgroup_id, pid, bytes."""
    sign = pl.when(pl.col("event") == "filemap_delete").then(-1).otherwise(1)
    return run.files.filter(pl.col("path").is_not_null()).select(
        "ts_ns", "path", "cgroup_id", "pid", (pl.col("bytes") * sign).alias("bytes")
    )


def _rows(df: pl.DataFrame, run: RunData) -> list[dict[str, Any]]:
    out = df.with_columns(
        rel_s("peak_ts_ns", run.t0_ns).alias("peak_t_s"),
        rel_s("first_ts_ns", run.t0_ns).alias("first_t_s"),
        rel_s("last_ts_ns", run.t0_ns).alias("last_t_s"),
    ).drop("peak_ts_ns", "first_ts_ns", "last_ts_ns")
    return out.sort("peak", "end", descending=True).to_dicts()


def attribute(run: RunData) -> dict[str, Any]:
    charges = kind_charges(run)
    by_cgroup = peak_end(charges, ["cgroup_id"])
    cg_kind_end = charges.group_by("cgroup_id", "kind").agg(pl.col("bytes").sum().alias("end"))
    cgroups = []
    for row in _rows(by_cgroup, run):
        kinds = cg_kind_end.filter(pl.col("cgroup_id") == row["cgroup_id"])
        row["name"] = run.cgroup_name(row["cgroup_id"])
        row["path"] = run.cgroup_path(row["cgroup_id"])
        row["end_by_kind"] = {k: int(v) for k, v in zip(kinds["kind"], kinds["end"], strict=True)}
        cgroups.append(row)

    by_kind = _rows(peak_end(charges, ["kind"]), run)
    by_item = _rows(peak_end(run.charges.select("ts_ns", "item", "bytes"), ["item"]), run)
    for row in by_item:
        row["in_total"] = row["item"] in KIND_PARTS

    comm = (
        run.charges.filter(pl.col("comm").is_not_null()).group_by("pid").agg(pl.col("comm").last())
    )
    procs = peak_end(charges, ["pid"]).join(comm, on="pid", how="left")
    by_process = _rows(procs, run)

    files = file_deltas(run)
    file_levels = peak_end(files, ["path"]).join(
        files.filter(pl.col("bytes") > 0).group_by("path").agg(pl.col("cgroup_id").mode().first()),
        on="path",
        how="left",
    )
    mapped = (
        run.mappings.filter((pl.col("event") == "mmap") & pl.col("path").is_not_null())
        .group_by("path")
        .agg(pl.col("bytes").sum().alias("mapped_bytes"))
    )
    by_file = []
    for row in _rows(file_levels, run):
        row["cgroup"] = run.cgroup_name(row["cgroup_id"])
        by_file.append(row)
    mapped_of = dict(zip(mapped["path"], mapped["mapped_bytes"], strict=True))
    for row in by_file:
        row["mapped_bytes"] = mapped_of.pop(row["path"], 0)
    for path, nbytes in sorted(mapped_of.items(), key=lambda kv: -kv[1]):
        by_file.append(
            {
                "path": path,
                "peak": 0,
                "end": 0,
                "mapped_bytes": nbytes,
                "cgroup": None,
                "cgroup_id": None,
                "peak_t_s": None,
                "first_t_s": None,
                "last_t_s": None,
            }
        )

    total = peak_end(charges.with_columns(pl.lit("all").alias("all")), ["all"])
    return {
        "total": _rows(total.drop("all"), run)[0] if total.height else None,
        "by_cgroup": cgroups,
        "by_kind": sorted(by_kind, key=lambda r: KINDS.index(r["kind"])),
        "by_item": by_item,
        "by_process": by_process,
        "by_file": by_file,
    }


def timeline(run: RunData, buckets: int = 300, top: int = 8) -> dict[str, Any]:
    """Levels by kind and by cgroup at `buckets` instants, for the HTML charts."""
    charges = kind_charges(run)
    t_s, by_kind = bucket_levels(charges, "kind", run.t0_ns, run.t_end_ns, buckets)
    t_s, by_cg = bucket_levels(charges, "cgroup_id", run.t0_ns, run.t_end_ns, buckets)
    biggest = sorted(by_cg, key=lambda k: -max(by_cg[k], default=0))[:top]
    return {
        "t_s": t_s,
        "by_kind": {k: by_kind[k] for k in KINDS if k in by_kind},
        "by_cgroup": {run.cgroup_name(int(k)): by_cg[k] for k in biggest},
    }
