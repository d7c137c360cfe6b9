"""Reconciliation: does the trace account for what the kernel's own counters say?

- memcg: integrated `memcg_charge` per cgroup and item vs the change of the cgroup's `memory.stat`
  between its first and last sample. v1 keys (`cache`, `rss`, ...) are the cgroup's own pages,
  so only its own charges count; v2 keys (`file`, `anon`, ...) include descendants, so the charges
  of every known cgroup below it (by path, from the metadata) count too. `total_*` keys are skipped.
- page faults: `page_fault` counts per pid vs `/proc/PID/stat` minflt+majflt (`proc_faults`).
  Faults the kernel takes itself while a CUDA call pins host memory (get_user_pages: one per
  page, counted in minflt, no exception, so no tracepoint) are the pages those calls had charged
  (host_charges.py); they explain the gap up to its size and are not losses.
- CUDA vs NVML: device memory allocated minus freed vs NVML's used-memory change.
- lost events and probes that did not attach, from the metadata.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.cuda_memory import device_deltas
from uvmtrace.analysis.host_charges import pinned_faults
from uvmtrace.analysis.items import KIND_PARTS, STAT_KEY_ITEM, V2_ONLY_KEYS
from uvmtrace.analysis.load import RunData, is_kernel_side, recovery
from uvmtrace.analysis.units import fmt_pct
from uvmtrace.recording.metadata import Metadata
from uvmtrace.recording.schema import split_lost

_STAT_KEYS = pl.DataFrame({"key": list(STAT_KEY_ITEM), "item": list(STAT_KEY_ITEM.values())})


def _members(run: RunData, sampled: list[int], hierarchical: dict[int, bool]) -> pl.DataFrame:
    """(cgroup_id sampled, member cgroup whose charges count toward its memory.stat)."""
    paths = {k: v.path for k, v in run.meta.cgroups.items()}
    pairs = []
    for cg in sampled:
        pairs.append((cg, cg))
        base = paths.get(cg)
        if hierarchical.get(cg) and base:
            prefix = base.rstrip("/") + "/"
            pairs += [(cg, other) for other, p in paths.items() if p and p.startswith(prefix)]
    return pl.DataFrame(pairs, schema={"cgroup_id": pl.UInt64, "member": pl.UInt64}, orient="row")


def _window_parts(meta: Metadata) -> tuple[pl.Expr, pl.Expr]:
    """(certain, edge): charges certainly between two samples, and charges that may or may
    not be. A raw row holds its own time: a sample at t already holds the charges made at t, so
    nothing is uncertain. An aggregated row holds only its bucket's start: the bucket a sample
    was taken in holds charges from before and after it (the recorder aims its samples at the
    bucket grid, but a busy host delays them), so those buckets count as either, whichever
    memory.stat says, and only a difference beyond them is one."""
    bucket = meta.bucket_ns
    ts = pl.col("ts_ns")
    if meta.raw or not bucket:
        return (ts > pl.col("t_first")) & (ts <= pl.col("t_last")), pl.lit(False)
    first, last = pl.col("t_first") // bucket * bucket, pl.col("t_last") // bucket * bucket
    return (ts > first) & (ts < last), (ts == first) | (ts == last)


def memcg_rows(run: RunData) -> list[dict[str, Any]]:
    stat = run.samples.filter(
        (pl.col("event") == "memory.stat") & pl.col("bytes").is_not_null()
    ).join(_STAT_KEYS.rename({"key": "item", "item": "stat_item"}), on="item", how="inner")
    kept = list(run.meta.target_cgroups)
    if kept:
        # a cgroup sampled but not a target (a --pid target's shared cgroup): its memory.stat
        # moves with processes that were not traced, nothing to reconcile against
        stat = stat.filter(pl.col("cgroup_id").is_in(kept))
    if stat.is_empty():
        return []
    windows = (
        stat.sort("ts_ns")
        .group_by("cgroup_id", "item", "stat_item")
        .agg(
            pl.col("ts_ns").first().alias("t_first"),
            pl.col("ts_ns").last().alias("t_last"),
            (pl.col("bytes").last() - pl.col("bytes").first()).alias("stat_delta"),
        )
        .rename({"item": "key"})
    )
    keys_of = windows.group_by("cgroup_id").agg(pl.col("key"))
    hierarchical = {
        int(cg): bool(set(keys) & V2_ONLY_KEYS)
        for cg, keys in zip(keys_of["cgroup_id"], keys_of["key"], strict=True)
    }
    members = _members(run, list(hierarchical), hierarchical)
    # only the charges of sampled cgroups (and their members) to sampled items take part
    charges = (
        run.charges.lazy()
        .filter(
            pl.col("cgroup_id").is_in(members["member"].unique().implode())
            & pl.col("item").is_in(windows["stat_item"].unique().implode())
        )
        .select(
            pl.col("cgroup_id").alias("member"),
            pl.col("item").cast(pl.String).alias("stat_item"),
            "ts_ns",
            "bytes",
        )
    )
    certain, edge = _window_parts(run.meta)
    bytes_ = pl.col("bytes")
    traced = (
        windows.lazy()
        .join(members.lazy(), on="cgroup_id")
        .join(
            charges,
            on=["member", "stat_item"],
            how="inner",
        )
        .filter(certain | edge)
        .group_by("cgroup_id", "key")
        .agg(
            bytes_.filter(certain).sum().alias("sure"),
            bytes_.filter(edge).clip(upper_bound=0).sum().alias("edge_down"),
            bytes_.filter(edge).clip(lower_bound=0).sum().alias("edge_up"),
        )
        .collect()
    )
    # the traced delta is the value in [sure + edge_down, sure + edge_up] nearest memory.stat's
    low, high = pl.col("sure") + pl.col("edge_down"), pl.col("sure") + pl.col("edge_up")
    rows = (
        windows.join(traced, on=["cgroup_id", "key"], how="left")
        .with_columns(pl.col("sure", "edge_down", "edge_up").fill_null(0))
        .with_columns(
            pl.col("stat_delta").clip(lower_bound=low, upper_bound=high).alias("traced_delta"),
            (high - low).alias("edge_bytes"),
        )
        .with_columns((pl.col("traced_delta") - pl.col("stat_delta")).alias("difference"))
        .sort("cgroup_id", "key")
    )
    out = []
    for r in rows.to_dicts():
        out.append(
            {
                "cgroup_id": r["cgroup_id"],
                "cgroup": run.cgroup_name(r["cgroup_id"]),
                "key": r["key"],
                "item": r["stat_item"],
                "hierarchical": hierarchical[int(r["cgroup_id"])],
                "stat_delta": r["stat_delta"],
                "traced_delta": r["traced_delta"],
                "difference": r["difference"],
                # charges in the buckets the two samples fell in: before or after them
                "edge_bytes": r["edge_bytes"],
                "in_total": r["stat_item"] in KIND_PARTS,
            }
        )
    return out


def fault_rows(run: RunData) -> list[dict[str, Any]]:
    """Traced faults per pid against the kernel's minflt + majflt. `exact`: the /proc reading
    was taken at exit (the launched command); else it is the last one seen while the process
    ran (a container's processes are not uvmtrace's children), a lower bound."""
    readings = run.proc.filter(
        (pl.col("event") == "proc_faults") & pl.col("item").is_in(["minflt", "majflt"])
    )
    if readings.is_empty():
        return []
    exact = (pl.col("text").is_null() | (pl.col("text") == "at exit")).all().alias("exact")
    proc = (
        readings.sort("ts_ns")
        .group_by("pid", "item")
        .agg(pl.col("count").last(), pl.col("text").last())
        .group_by("pid")
        .agg(pl.col("count").sum().alias("proc_faults"), exact)
    )
    rows = (
        proc.join(run.fault_counts, on="pid", how="left")
        .join(pinned_faults(run), on="pid", how="left")
        .with_columns(pl.col("faults").fill_null(0).alias("traced_faults"))
        .with_columns(
            pl.min_horizontal(
                pl.col("pinned_faults").fill_null(0),
                (pl.col("proc_faults") - pl.col("traced_faults")).clip(lower_bound=0),
            ).alias("pinned_faults")
        )
    )
    return (
        rows.select("pid", "traced_faults", "pinned_faults", "proc_faults", "exact")
        .sort("pid")
        .to_dicts()
    )


def cuda_vs_nvml(run: RunData) -> dict[str, Any] | None:
    nvml = run.samples.filter(
        (pl.col("event") == "nvml_memory") & pl.col("bytes").is_not_null()
    ).sort("ts_ns")
    if nvml.is_empty():
        return None
    per_dev = nvml.group_by("item").agg(
        pl.col("ts_ns").first().alias("t0"),
        pl.col("ts_ns").last().alias("t1"),
        (pl.col("bytes").last() - pl.col("bytes").first()).alias("delta"),
    )
    t0, t1 = int(per_dev["t0"].min()), int(per_dev["t1"].max())
    deltas = device_deltas(run)
    cuda_net = int(
        deltas.filter((pl.col("ts_ns") > t0) & (pl.col("ts_ns") <= t1))["bytes"].sum() or 0
    )
    return {
        "nvml_used_delta": int(per_dev["delta"].sum()),
        "cuda_net_bytes": cuda_net,
        "difference": cuda_net - int(per_dev["delta"].sum()),
        "from_t_s": run.rel_s(t0),
        "to_t_s": run.rel_s(t1),
    }


def kernel_not_traced(run: RunData) -> str | None:
    """Why the kernel side (memcg charges, page faults) is absent, or None when it was traced:
    the recording's own `not_traced` reason, else the probes that did not attach."""
    memcg = run.meta.probes.get("memcg")
    detached = memcg is not None and not memcg.attached
    if "kernel" in run.streams and not detached:
        return None
    for entry in run.meta.not_traced:
        if is_kernel_side(entry.what):
            return f"{entry.what}: {entry.why or 'no reason given'}"
    if memcg is not None and detached:
        return f"memcg probe: {memcg.why or 'not attached'}"
    return "the recording holds no kernel events"


def reconcile(run: RunData) -> dict[str, Any]:
    untraced = kernel_not_traced(run)
    # without the kernel side there is nothing to hold memory.stat and /proc against: comparing
    # them with zero traced bytes would read as "0 % agreement"
    memcg = memcg_rows(run) if untraced is None else []
    faults = fault_rows(run) if untraced is None else []
    nvml = cuda_vs_nvml(run)
    # Nested skips are host-wide, mostly other cgroups': shown, not judged.
    lost, nested = split_lost(run.meta.lost)
    not_attached = [
        {"probe": name, "why": p.why or "not attached"}
        for name, p in run.meta.probes.items()
        if not p.attached
    ]
    main = [r for r in memcg if r["in_total"]]
    stat_abs = sum(abs(r["stat_delta"]) for r in main)
    diff_abs = sum(abs(r["difference"]) for r in main)
    memcg_agreement = None
    if main:
        memcg_agreement = (
            1.0 if stat_abs == 0 and diff_abs == 0 else max(0.0, 1.0 - diff_abs / max(stat_abs, 1))
        )
    # exact readings are compared; a reading taken while running only bounds the count below
    exact_rows = [r for r in faults if r["exact"]]
    proc_total = sum(r["proc_faults"] for r in exact_rows)
    pinned = sum(r["pinned_faults"] for r in exact_rows)
    explained = sum(r["traced_faults"] for r in exact_rows) + pinned
    fault_share = explained / proc_total if proc_total else None
    nvml_agreement = _nvml_agreement(nvml)
    summary = {
        "kernel_traced": untraced is None,
        "kernel_not_traced_why": untraced,
        "memcg_agreement": memcg_agreement,
        "memcg_unaccounted_bytes": diff_abs if main else None,
        "fault_share": fault_share,
        "pinned_faults": pinned,
        "nvml_agreement": nvml_agreement,
        "lost_events": sum(lost.values()),
        "nested_skips": sum(nested.values()),
        "trust": (
            _verdict(memcg_agreement, fault_share, sum(lost.values()), bool(memcg))
            if untraced is None
            else _verdict(nvml_agreement, None, sum(lost.values()), nvml is not None)
        ),
    }
    rec = recovery(run.meta)
    if rec is not None and rec["cut"]:  # what came after the cut is unknown
        summary["trust"] = "low"
    summary["recovery"] = rec
    summary["line"] = trust_line(summary, memcg, nvml, run.missing)
    return {
        "memcg": memcg,
        "faults": faults,
        "cuda_vs_nvml": nvml,
        "lost": lost,
        "nested_skips": nested,
        "probes_not_attached": not_attached,
        "summary": summary,
    }


def _verdict(memcg: float | None, faults: float | None, lost: int, has_memcg: bool) -> str:
    if not has_memcg or memcg is None:
        return "unknown"
    worst = min(x for x in (memcg, faults if faults is not None else 1.0))
    if lost == 0 and worst >= 0.95:
        return "high"
    if worst >= 0.8:
        return "medium"
    return "low"


def _nvml_agreement(nvml: dict[str, Any] | None) -> float | None:
    """1 - |CUDA net - NVML used change| / the larger of the two (1.0 when both are 0)."""
    if nvml is None:
        return None
    scale = max(abs(nvml["nvml_used_delta"]), abs(nvml["cuda_net_bytes"]))
    return 1.0 if scale == 0 else max(0.0, 1.0 - abs(nvml["difference"]) / scale)


def trust_line(
    summary: dict[str, Any],
    memcg: list[dict[str, Any]],
    nvml: dict[str, Any] | None,
    missing: list[str],
) -> str:
    if not summary.get("kernel_traced", True):
        return _cuda_side_line(summary, nvml, missing)
    parts = _recovery_parts(summary)
    if summary["memcg_agreement"] is None:
        parts.append("no memory.stat samples to check the charges against")
    else:
        ncg = len({r["cgroup_id"] for r in memcg})
        parts.append(
            f"eBPF charges match memory.stat to {fmt_pct(summary['memcg_agreement'])} "
            f"({ncg} cgroup{'s' if ncg != 1 else ''})"
        )
    if summary["fault_share"] is not None:
        line = f"page faults {fmt_pct(summary['fault_share'])} of /proc counts"
        if summary.get("pinned_faults"):
            line += (
                f" ({summary['pinned_faults']:,} of them taken inside the kernel while CUDA "
                "calls pinned host memory, which no fault tracepoint sees)"
            )
        parts.append(line)
    if nvml is not None:
        parts.append(
            f"CUDA allocations vs NVML used differ by {abs(nvml['difference']) / (1 << 20):.0f} MiB"
        )
    parts.append(f"{summary['lost_events']} events lost")
    if summary.get("nested_skips"):
        parts.append(f"{summary['nested_skips']} host-wide updates skipped by the kernel (nested)")
    if missing:
        parts.append(f"{len(missing)} thing(s) not traced")
    return f"Trust: {summary['trust']} — " + "; ".join(parts) + "."


def _recovery_parts(summary: dict[str, Any]) -> list[str]:
    rec = summary.get("recovery")
    if rec is None:
        return []
    if rec["cut"]:
        return [f"recording cut short, recovered from its spool ({rec['why']})"]
    return ["recovered from its spool (complete)"]


def _cuda_side_line(
    summary: dict[str, Any], nvml: dict[str, Any] | None, missing: list[str]
) -> str:
    """The verdict of a recording without the kernel side: what was not traced and why, then
    only the checks that exist."""
    parts = [
        *_recovery_parts(summary),
        f"kernel side not traced ({summary['kernel_not_traced_why']})",
    ]
    if nvml is not None:
        parts.append(
            f"CUDA allocations vs NVML used differ by {abs(nvml['difference']) / (1 << 20):.0f} MiB"
        )
    else:
        parts.append("no NVML samples to check the CUDA stream against")
    parts.append(f"{summary['lost_events']} events lost")
    others = [m for m in missing if not m.startswith("no kernel stream")]
    if others:
        parts.append(f"{len(others)} other thing(s) not traced")
    return f"Trust: {summary['trust']} (CUDA side only) — " + "; ".join(parts) + "."
