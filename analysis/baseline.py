"""The starting state of a recording that attached to running processes (`record --pid /
--container / --cgroup`): what the targets already held when tracing began, from the snapshot
(stream `snapshot`) and the first memory.stat sample. Everything the trace shows happened on top
of it; what happened before it is not in the recording."""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.load import RunData
from uvmtrace.recording.metadata import Attach

# memory.stat keys shown (v2 first, then v1's names for the same kinds)
STAT_KEYS = ("anon", "file", "shmem", "kernel", "rss", "cache", "mapped_file")
SMAPS = {"rss": "Rss", "anon": "Anonymous", "file_pss": "Pss_File", "shmem_pss": "Pss_Shmem"}
TOP_FILES = 10


def baseline(run: RunData) -> dict[str, Any] | None:
    attach = run.meta.attach
    if attach is None:
        return None
    return {
        "attached_t_s": run.rel_s(attach.attached_ns),
        "ended": attach.ended,
        "targets": list(attach.targets),
        "missing_before": attach.missing_before,
        "cgroups": _cgroups(run, attach),
        "processes": _processes(run),
        "files": _files(run),
        "cuda_next_time": attach.cuda_next_time,
    }


def _cgroups(run: RunData, attach: Attach) -> list[dict[str, Any]]:
    """memory.stat of each target's cgroup at attach and at the end. `shared`: the cgroup
    holds other processes too (a --pid target's session or service): its figures are theirs
    as much as the target's."""
    targets = {t["cgroup_id"]: t for t in attach.targets if t.get("cgroup_id") is not None}
    stat = run.samples.filter(
        (pl.col("event") == "memory.stat")
        & pl.col("cgroup_id").is_in(list(targets))
        & pl.col("item").is_in(STAT_KEYS)
    )
    rows = (
        stat.sort("ts_ns")
        .group_by("cgroup_id", pl.col("item").alias("key"))
        .agg(
            pl.col("bytes").first().alias("at_attach"),
            pl.col("bytes").last().alias("at_end"),
        )
        .with_columns((pl.col("at_end") - pl.col("at_attach")).alias("change"))
        .sort("cgroup_id", "key")
    )
    out = []
    for r in rows.to_dicts():
        t = targets[r["cgroup_id"]]
        name = run.cgroup_name(r["cgroup_id"])
        if name.startswith("cgroup ") and t.get("cgroup_path"):
            name = t["cgroup_path"]
        out.append({"cgroup": name, "shared": not t.get("cgroup_charges_kept"), **r})
    return out


def _processes(run: RunData) -> list[dict[str, Any]]:
    smaps = run.snapshot.filter(pl.col("event") == "smaps_rollup")
    if smaps.is_empty():
        return []
    per_pid = smaps.group_by("pid").agg(
        pl.col("comm").first(),
        *[
            pl.col("bytes").filter(pl.col("item") == key).sum().alias(name)
            for name, key in SMAPS.items()
        ],
    )
    return per_pid.sort("rss", descending=True).to_dicts()


def _files(run: RunData) -> dict[str, Any]:
    files = run.snapshot.filter(pl.col("event") == "file_cache")
    top = (
        files.sort("bytes", descending=True)
        .head(TOP_FILES)
        .select(
            "path",
            pl.col("bytes").alias("resident"),
            pl.col("total_bytes").alias("size"),
            pl.col("item").alias("held_as"),
            "pid",
            pl.col("text").alias("method"),
        )
    )
    return {
        "count": files.height,
        "resident": int(files["bytes"].sum() or 0),
        "largest": top.to_dicts(),
    }
