"""Which processes belong to the traced command, and which cgroup each process was charged in.

The kernel stream holds more than the command's own processes: a task that charges pages to a
target cgroup is adopted by the probes (probes/memcg.bpf.h), so a process of another session that
touches one page of the container's memory shows up with its own exec, mmaps and `/proc/meminfo`
reads. A KV-sizing inference that looked at every process once explained run A's KV cache with
such a stranger's 1 GiB mmap. The command's processes are:

  the launched pid (the recorder's own `exec` row, or `wait_status`) and its fork descendants;
  processes charged mostly in a target cgroup or in the container's cgroup (a `docker run`'s
  workload is not a descendant of the command);
  processes of the cuda stream (the shim is preloaded into the command only).

An `exec` row alone proves nothing (the adopted stranger has one). A recording that tells none of
the above (hand-made, or stripped) has no scope: every process counts, as before.
"""

from __future__ import annotations

import polars as pl

from uvmtrace.analysis.load import RunData


def process_cgroups(run: RunData) -> pl.DataFrame:
    """pid -> the cgroup most of its charges went to (pid, cgroup_id); on a tie, the lowest id.

    Counted per (pid, cgroup) pair: a hash of two integers over the charges, then a tiny sort,
    where `mode()` per pid would gather every charge of every process."""
    if "process_cgroups" not in run.derived:
        run.derived["process_cgroups"] = (
            run.charges.filter(pl.col("cgroup_id").is_not_null())
            .group_by("pid", "cgroup_id")
            .len()
            .sort(["len", "cgroup_id"], descending=[True, False])
            .group_by("pid", maintain_order=True)
            .agg(pl.col("cgroup_id").first())
        )
    return run.derived["process_cgroups"]


def scope_cgroups(run: RunData) -> set[int]:
    """The cgroups the command ran in: metadata `target_cgroups`, cgroups marked `target`, and
    the container's cgroup (metadata `container.cgroup_id`)."""
    meta = run.meta
    out = set(meta.target_cgroups) | {cid for cid, info in meta.cgroups.items() if info.target}
    if meta.container is not None and meta.container.cgroup_id is not None:
        out.add(meta.container.cgroup_id)
    return out


def _launched(run: RunData) -> set[int]:
    """The pid the recorder started: its `wait_status`, or its own `exec` row (no comm: written
    by the recorder, not by the exec tracepoint)."""
    proc = run.proc
    rows = proc.filter(
        (pl.col("event") == "wait_status")
        | ((pl.col("event") == "exec") & pl.col("comm").is_null() & pl.col("text").is_not_null())
    )
    return {int(p) for p in rows["pid"].drop_nulls()}


def _descendants(run: RunData, roots: set[int]) -> set[int]:
    """`roots` and every process forked from one of them (fork rows: pid = child, count =
    parent), however deep."""
    forks = run.proc.filter((pl.col("event") == "fork") & pl.col("count").is_not_null())
    children: dict[int, list[int]] = {}
    for child, parent in forks.select("pid", "count").iter_rows():
        if child is not None:
            children.setdefault(int(parent), []).append(int(child))
    tree, todo = set(roots), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in tree:
                tree.add(child)
                todo.append(child)
    return tree


def command_pids(run: RunData) -> set[int] | None:
    """The traced command's pids, or None when the recording cannot tell (then every process
    counts). Cached on the run."""
    if "command_pids" not in run.derived:
        roots = _launched(run)
        cgroups = scope_cgroups(run)
        if cgroups:
            pc = process_cgroups(run)
            in_scope = pc.filter(pl.col("cgroup_id").is_in(sorted(cgroups)))
            roots |= {int(p) for p in in_scope["pid"]}
        cuda = run.calls.filter(pl.col("stream") == "cuda")
        roots |= {int(p) for p in cuda["pid"].drop_nulls()}
        run.derived["command_pids"] = _descendants(run, roots) if roots else None
    pids: set[int] | None = run.derived["command_pids"]
    return pids
