"""Attribution: bytes charged since the start, by cgroup, kind, item, process and file.

The memcg tracepoints fire for the cgroup a page is charged to (its ancestors' memory.stat
show it too, through rstat, but without an event), so each charge is attributed to the cgroup of
its event and summing over cgroups counts nothing twice. Totals use the non-overlapping kinds of
items.py; the per-item table shows every item as recorded.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.items import KIND_PARTS, KINDS, OWN_FILE_PATTERN
from uvmtrace.analysis.levels import bucket_levels, peak_end, peak_end_plan, rel_s
from uvmtrace.analysis.load import RunData
from uvmtrace.analysis.scope import process_cgroups

KIND = pl.Enum(list(KINDS))
# what one charge of an item adds to its cgroup's (or process's) total over all kinds: NR_SHMEM
# adds +1 as shmem and -1 as file, so 0
_NET_SIGN = {item: sum(sign for _, sign in parts) for item, parts in KIND_PARTS.items()}
_NEAR_NS = 1_000_000_000  # a filemap row and the charge of its pages: the same 100 ms bucket


def kind_charges(run: RunData) -> pl.DataFrame:
    """memcg charges as non-overlapping kinds: ts_ns, cgroup_id, pid, comm, kind, bytes; one block
    per kind, each in time order (a kind's level needs only its own rows in order, so the blocks
    are never sorted together). Built once per run: attribution, timeline and diff read it."""
    if "kind_charges" not in run.derived:
        item = pl.col("item")
        blocks = []
        for kind in KINDS:
            signs = {i: sign for i, parts in KIND_PARTS.items() for k, sign in parts if k == kind}
            signed = pl.col("bytes")
            if set(signs.values()) != {1}:
                signed = signed * item.replace_strict(signs, return_dtype=pl.Int64)
            blocks.append(
                run.charges.filter(item.is_in(list(signs))).select(
                    "ts_ns", "cgroup_id", "pid", "comm", pl.lit(kind, KIND).alias("kind"), signed
                )
            )
        run.derived["kind_charges"] = pl.concat(blocks)
    return run.derived["kind_charges"]


def net_charges(run: RunData) -> pl.DataFrame:
    """Each charge's effect on the total of its cgroup and process, in time order: ts_ns,
    cgroup_id, pid, bytes (a shmem charge is kept, as 0, so its instant still counts)."""
    if "net_charges" not in run.derived:
        item = pl.col("item")
        run.derived["net_charges"] = run.charges.filter(item.is_in(list(KIND_PARTS))).select(
            "ts_ns",
            "cgroup_id",
            "pid",
            pl.col("bytes") * item.replace_strict(_NET_SIGN, return_dtype=pl.Int64),
        )
    return run.derived["net_charges"]


def _all_file_deltas(run: RunData) -> pl.DataFrame:
    """Page-cache pages per file as signed deltas, in time order: ts_ns, path, cgroup_id, pid,
    bytes, own (a file of uvmtrace itself)."""
    if "all_file_deltas" not in run.derived:
        sign = pl.when(pl.col("event").is_in(["filemap_delete", "reclaim_file"]))
        sign = sign.then(-1).otherwise(1)
        files = (
            run.files.filter(pl.col("path").is_not_null())
            .select("ts_ns", "path", "cgroup_id", "pid", (pl.col("bytes") * sign).alias("bytes"))
            .sort("ts_ns", maintain_order=True)
        )
        run.derived["all_file_deltas"] = _reader_cgroups(run, files).with_columns(
            pl.col("path").str.contains(OWN_FILE_PATTERN).alias("own")
        )
    return run.derived["all_file_deltas"]


def _reader_cgroups(run: RunData, files: pl.DataFrame) -> pl.DataFrame:
    """Fills the cgroup of filemap rows, which the tracepoints do not carry: the cgroup the
    reading process's page-cache charges (NR_FILE_PAGES) went to nearest in time, within a
    second (the same pages, charged in the same bucket), else the cgroup most of its charges
    went to. A row that already has a cgroup keeps it."""
    if files.is_empty() or files["cgroup_id"].null_count() == 0:
        return files
    charged = run.charges.filter(
        (pl.col("item") == "NR_FILE_PAGES") & (pl.col("bytes") > 0)
    ).select(pl.col("ts_ns").alias("c_ts_ns"), "pid", pl.col("cgroup_id").alias("charged"))
    return (
        files.join_asof(
            charged,
            left_on="ts_ns",
            right_on="c_ts_ns",
            by="pid",
            strategy="nearest",
            tolerance=_NEAR_NS,
            check_sortedness=False,
        )
        .join(process_cgroups(run).rename({"cgroup_id": "main"}), on="pid", how="left")
        .select(
            "ts_ns",
            "path",
            pl.coalesce(
                pl.col("cgroup_id"), pl.col("charged").cast(files.schema["cgroup_id"]), "main"
            ).alias("cgroup_id"),
            "pid",
            "bytes",
        )
    )


def file_deltas(run: RunData) -> pl.DataFrame:
    """The workload's page cache per file (uvmtrace's own files left out), in time order:
    ts_ns, path, cgroup_id, pid, bytes."""
    if "file_deltas" not in run.derived:
        files = _all_file_deltas(run)
        run.derived["file_deltas"] = files.filter(~pl.col("own")).drop("own")
    return run.derived["file_deltas"]


def own_file_deltas(run: RunData) -> pl.DataFrame:
    """The page cache of uvmtrace's own files (shim records, spool), same columns."""
    if "own_file_deltas" not in run.derived:
        files = _all_file_deltas(run)
        run.derived["own_file_deltas"] = files.filter(pl.col("own")).drop("own")
    return run.derived["own_file_deltas"]


def _rows(df: pl.DataFrame, run: RunData) -> list[dict[str, Any]]:
    out = df.with_columns(
        rel_s("peak_ts_ns", run.t0_ns).alias("peak_t_s"),
        rel_s("first_ts_ns", run.t0_ns).alias("first_t_s"),
        rel_s("last_ts_ns", run.t0_ns).alias("last_t_s"),
    ).drop("peak_ts_ns", "first_ts_ns", "last_ts_ns")
    # ties (files of one size, ...) in key order, so the same recording gives the same report
    return out.sort(
        ["peak", "end", df.columns[0]], descending=[True, True, False], nulls_last=True
    ).to_dicts()


def attribute(run: RunData) -> dict[str, Any]:
    kinds = kind_charges(run).lazy()
    net = net_charges(run).lazy()
    files = file_deltas(run)
    plans = [
        peak_end_plan(net, ["cgroup_id"]),
        kinds.group_by("cgroup_id", "kind").agg(pl.col("bytes").sum().alias("end")),
        peak_end_plan(kinds, ["kind"]),
        peak_end_plan(run.charges.lazy().select("ts_ns", "item", "bytes"), ["item"]),
        peak_end_plan(net, ["pid"]).join(
            run.charges.lazy()
            .filter(pl.col("comm").is_not_null())
            .group_by("pid")
            .agg(pl.col("comm").last()),
            on="pid",
            how="left",
        ),
        peak_end_plan(files.lazy(), ["path"]).join(
            files.lazy()
            .filter(pl.col("bytes") > 0)
            .group_by("path")
            .agg(pl.col("cgroup_id").mode().first()),
            on="path",
            how="left",
        ),
        peak_end_plan(net, []),
    ]
    by_cgroup, cg_kind_end, by_kind, by_item, procs, file_levels, total = pl.collect_all(plans)

    end_by_kind: dict[int, dict[str, int]] = {}
    for cg, kind, end in cg_kind_end.iter_rows():
        end_by_kind.setdefault(cg, {})[kind] = int(end)
    cgroups = []
    for row in _rows(by_cgroup, run):
        row["name"] = run.cgroup_name(row["cgroup_id"])
        row["path"] = run.cgroup_path(row["cgroup_id"])
        row["end_by_kind"] = end_by_kind.get(row["cgroup_id"], {})
        cgroups.append(row)

    by_item_rows = _rows(by_item, run)
    for row in by_item_rows:
        row["in_total"] = row["item"] in KIND_PARTS

    all_mapped = (
        run.mappings.filter((pl.col("event") == "mmap") & pl.col("path").is_not_null())
        .group_by("path")
        .agg(pl.col("bytes").sum().alias("mapped_bytes"))
        .with_columns(pl.col("path").str.contains(OWN_FILE_PATTERN).alias("own"))
    )
    mapped = all_mapped.filter(~pl.col("own"))
    by_file = []
    for row in _rows(file_levels, run):
        row["cgroup"] = run.cgroup_name(row["cgroup_id"])
        by_file.append(row)
    mapped_of = dict(zip(mapped["path"], mapped["mapped_bytes"], strict=True))
    for row in by_file:
        row["mapped_bytes"] = mapped_of.pop(row["path"], 0)
    for path, nbytes in sorted(mapped_of.items(), key=lambda kv: (-kv[1], kv[0])):
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

    return {
        "own_files": _own_files(run, all_mapped.filter(pl.col("own"))),
        "total": _rows(total, run)[0] if total.height else None,
        "by_cgroup": cgroups,
        "by_kind": sorted(_rows(by_kind, run), key=lambda r: KINDS.index(r["kind"])),
        "by_item": by_item_rows,
        "by_process": _rows(procs, run),
        "by_file": by_file,
    }


def _own_files(run: RunData, mapped: pl.DataFrame) -> dict[str, Any] | None:
    """uvmtrace's own files as one line: how many, their page cache together (peak, end) and
    the bytes mapped of them."""
    own = own_file_deltas(run)
    paths = set(own["path"].unique().to_list()) | set(mapped["path"].to_list())
    if not paths:
        return None
    level = peak_end(own.select("ts_ns", "bytes"), []) if own.height else None
    return {
        "files": len(paths),
        "peak": int(level["peak"][0]) if level is not None and level.height else 0,
        "end": int(level["end"][0]) if level is not None and level.height else 0,
        "mapped_bytes": int(mapped["mapped_bytes"].sum() or 0),
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
