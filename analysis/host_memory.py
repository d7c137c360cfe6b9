"""Host memory the command's cgroups held at an instant, by kind: the other side of a device-memory
signal. On a discrete GPU `cuMemGetInfo` counts device memory only, so host page cache can grow
by gigabytes without moving it; a diff shows that by putting the host difference next to an
unchanged signal.

Sources, best first:
  charges       the kernel stream's memcg charges since the start to the command's cgroups
                (target cgroups, the container's), by the non-overlapping kinds of items.py;
  memory.stat   the nearest sample of each target cgroup at that instant (no kernel stream):
                v1 cache/rss/shmem, v2 file/anon/shmem/kernel/sock; page cache = file (or
                cache) minus shmem, which both count. With v2, a target nested in another target
                is already in its parent's figures and is skipped.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.attribution import kind_charges
from uvmtrace.analysis.levels import level_at
from uvmtrace.analysis.load import RunData
from uvmtrace.analysis.scope import scope_cgroups

SOURCE_CHARGES = "eBPF memcg charges to the target cgroups since the start"
SOURCE_STAT = "memory.stat samples of the target cgroups at the sizing instant (no kernel stream)"

# kind -> (memory.stat keys added, keys subtracted); v2 keys first, v1 when the v2 key is absent
_V2 = {
    "file": (["file"], ["shmem"]),
    "anon": (["anon"], []),
    "shmem": (["shmem"], []),
    "kernel": (["kernel"], []),
    "sock": (["sock"], []),
}
_V1 = {"file": (["cache"], ["shmem"]), "anon": (["rss"], []), "shmem": (["shmem"], [])}


def _top_level(run: RunData, cgroups: set[int]) -> set[int]:
    """Targets that are not below another target (by path): v2 figures include descendants."""
    paths = {c: (run.meta.cgroup(c).path or "").rstrip("/") for c in cgroups}
    return {
        c
        for c, p in paths.items()
        if not p or not any(q and q != p and p.startswith(q + "/") for q in paths.values())
    }


def stat_by_kind(run: RunData, ts_ns: int) -> dict[str, int] | None:
    """Per kind, bytes the target cgroups held at `ts_ns` by their nearest memory.stat sample;
    None when there is none."""
    cgroups = scope_cgroups(run)
    stat = run.samples.filter(
        (pl.col("event") == "memory.stat")
        & pl.col("bytes").is_not_null()
        & pl.col("cgroup_id").is_in(sorted(cgroups))
    )
    if stat.is_empty():
        return None
    v2 = "file" in set(stat["item"].unique().to_list())
    if v2:
        stat = stat.filter(pl.col("cgroup_id").is_in(sorted(_top_level(run, cgroups))))
    # one sample instant per cgroup: the nearest to ts_ns
    nearest = (
        stat.select("cgroup_id", "ts_ns")
        .unique()
        .with_columns((pl.col("ts_ns") - ts_ns).abs().alias("gap"))
        .sort("gap", "ts_ns")
        .group_by("cgroup_id", maintain_order=True)
        .first()
        .select("cgroup_id", "ts_ns")
    )
    values = dict(
        stat.join(nearest, on=["cgroup_id", "ts_ns"])
        .group_by("item")
        .agg(pl.col("bytes").sum())
        .iter_rows()
    )
    out = {}
    for kind, (plus, minus) in (_V2 if v2 else _V1).items():
        if all(k in values for k in plus):
            out[kind] = sum(values[k] for k in plus) - sum(values.get(k, 0) for k in minus)
    return out


def _charged_by_kind(run: RunData, ts_ns: int) -> dict[str, int]:
    """Per kind, bytes charged since the start up to `ts_ns` to the command's cgroups (all
    traced cgroups when the recording names none)."""
    charges = kind_charges(run)
    cgroups = scope_cgroups(run)
    if cgroups:
        charges = charges.filter(pl.col("cgroup_id").is_in(sorted(cgroups)))
    return {str(k): int(v) for k, v in level_at(charges, ["kind"], ts_ns).iter_rows()}


def host_memory_difference(a: RunData, b: RunData, ta: int, tb: int) -> dict[str, Any] | None:
    """B - A host memory at the two instants: total, by_kind {kind: bytes}, source; None when
    neither source exists in both runs."""
    if not a.charges.is_empty() and not b.charges.is_empty():
        la, lb = _charged_by_kind(a, ta), _charged_by_kind(b, tb)
        source = SOURCE_CHARGES
    else:
        sa, sb = stat_by_kind(a, ta), stat_by_kind(b, tb)
        if sa is None or sb is None:
            return None
        la, lb = sa, sb
        source = SOURCE_STAT
    by_kind = {str(k): int(lb.get(k, 0) - la.get(k, 0)) for k in sorted(set(la) | set(lb), key=str)}
    return {
        "a_bytes": int(sum(la.values())),
        "b_bytes": int(sum(lb.values())),
        "difference_bytes": int(sum(by_kind.values())),
        "by_kind": {k: v for k, v in by_kind.items() if v},
        "source": source,
    }


def host_memory_at(run: RunData, ts_ns: int) -> dict[str, Any] | None:
    """Host memory the command's cgroups held at `ts_ns`: by_kind {kind: bytes} and source;
    None when the recording has neither charges nor memory.stat samples of them."""
    if not run.charges.is_empty():
        return {"by_kind": _charged_by_kind(run, ts_ns), "source": SOURCE_CHARGES}
    held = stat_by_kind(run, ts_ns)
    return None if held is None else {"by_kind": held, "source": SOURCE_STAT}
