"""Diff of two runs: why B's sizing signal was smaller than A's.

Both runs are aligned by phase; the instant compared is each run's KV-sizing query (or, when a run
has none, its end). The signal difference (A - B) is split into:

  baseline     host MemFree at the first sample, A - B: memory that was already gone before
               either recording started (system-memory signals only);
  charges      bytes charged since the start, B - A, by the non-overlapping kinds of items.py
               (page cache, anon, shmem, kernel, sock) -- the same total split by cgroup, by
               process (comm) and, for page cache, by file;
  CUDA device  device allocations live at that instant, B - A (device-memory signals only,
               i.e. cuMemGetInfo/NVML on a discrete GPU: those pages are never charged);
               every run's CUDA memory (device, vmm, pool, pinned/managed/registered host) B - A
               by kind and by calling library is shown beside it (`cuda`), never added;
  per-CPU free free pages that moved onto the per-CPU page lists since each run's start, B - A
               (`zoneinfo` samples): free memory, yet not in MemFree, whose share moves by
               hundreds of MiB with nobody's memory changing (docs/fix.md) -- system-memory
               signals only, when both runs sampled it;
  unexplained  the rest: memory taken outside the traced cgroups, untraced kernel memory, ...

Each part counts bytes once: kinds do not overlap, and cgroups/processes/files are other views of
the same charges, never added to them. uvmtrace's own files (shim records, spool) are one line
apart from the ranked files. For a device-memory signal the host memory B held more than A is
stated next to it (host_memory.py): the negative control that this signal does not count it.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.attribution import file_deltas, kind_charges, own_file_deltas
from uvmtrace.analysis.cuda_memory import cuda_memory_difference, device_bytes_at
from uvmtrace.analysis.host_memory import host_memory_difference
from uvmtrace.analysis.items import DEVICE_SIGNALS, KIND_LABEL
from uvmtrace.analysis.levels import level_at
from uvmtrace.analysis.load import RunData
from uvmtrace.analysis.phases import ALIGNABLE
from uvmtrace.analysis.scope import scope_cgroups


def _by(a: pl.DataFrame, b: pl.DataFrame, key: str) -> list[dict[str, Any]]:
    """Outer join of two per-key levels; rows ranked by |B - A|."""
    joined = (
        a.rename({"level": "a_bytes"})
        .join(b.rename({"level": "b_bytes"}), on=key, how="full", coalesce=True)
        .with_columns(pl.col("a_bytes").fill_null(0), pl.col("b_bytes").fill_null(0))
        .with_columns((pl.col("b_bytes") - pl.col("a_bytes")).alias("difference"))
        .filter(pl.col("difference") != 0)
        .sort(pl.col("difference").abs(), descending=True)
    )
    return joined.rename({key: "key"}).to_dicts()


def removed_cgroups(run: RunData) -> dict[int, int]:
    """Cgroups removed while recording (a `--rm` container's): id -> the time of the last
    memory.stat sample taken while it existed, its last living moment."""
    stat = run.samples.filter(pl.col("event") == "memory.stat")
    if stat.is_empty():
        return {}
    end = stat["ts_ns"].max()
    last = stat.group_by("cgroup_id").agg(pl.col("ts_ns").max()).filter(pl.col("ts_ns") < end)
    return {int(cg): int(t) for cg, t in last.iter_rows()}


def _cgroup_levels(charges: pl.DataFrame, ts_ns: int, removed: dict[int, int]) -> pl.DataFrame:
    """Per cgroup: charged up to `ts_ns`, or up to its last living moment when it was removed
    before (by then its pages were uncharged or moved to its parent)."""
    cutoff = pl.col("cgroup_id").replace_strict(
        removed, default=ts_ns, return_dtype=pl.Int64
    ).clip(upper_bound=ts_ns)  # fmt: skip
    return (
        charges.filter(pl.col("ts_ns") <= cutoff)
        .group_by("cgroup_id")
        .agg(pl.col("bytes").sum().alias("level"))
    )


def _named(levels: pl.DataFrame, run: RunData) -> pl.DataFrame:
    """Per-cgroup levels keyed by name: the two runs' cgroup ids never match, names may."""
    names = [run.cgroup_name(int(c)) for c in levels["cgroup_id"]]
    return (
        levels.with_columns(pl.Series("cgroup", names, dtype=pl.String))
        .group_by("cgroup")
        .agg(pl.col("level").sum())
    )


def _per_cpu_growth(run: RunData, ts_ns: int) -> int | None:
    """Free pages on the per-CPU lists at the sample nearest `ts_ns`, minus at the first one."""
    s = run.samples.filter(
        (pl.col("event") == "zoneinfo") & (pl.col("item") == "per_cpu_free")
    ).sort("ts_ns")
    if s.is_empty():
        return None
    first = int(s["bytes"][0])
    at = s.with_columns((pl.col("ts_ns") - ts_ns).abs().alias("gap")).sort("gap")["bytes"][0]
    return int(at) - first


def _first_memfree(run: RunData) -> int | None:
    s = run.samples.filter((pl.col("event") == "meminfo") & (pl.col("item") == "MemFree"))
    return None if s.is_empty() else int(s.sort("ts_ns")["bytes"][0])


def _device_signal(signal: str | None, run: RunData) -> bool:
    unified = run.meta.gpu.unified_memory
    return signal in DEVICE_SIGNALS and unified is False


def align(pa: list[dict[str, Any]], pb: list[dict[str, Any]]) -> list[dict[str, Any]]:
    a = {p["name"]: p for p in pa}
    b = {p["name"]: p for p in pb}
    return [
        {
            "name": name,
            "a_t_s": a[name]["t_s"] if name in a else None,
            "b_t_s": b[name]["t_s"] if name in b else None,
            "matched": name in a and name in b,
        }
        for name in ALIGNABLE
    ]


def mapped_at(run: RunData, ts_ns: int) -> set[str]:
    """Files a traced process still alive at `ts_ns` has mapped: its executable (its last exec)
    and the files it mmap'ed. Their pages cannot be dropped while mapped (munmap of part of a
    file is not followed: a mapped file stays mapped until its process exits or execs)."""
    proc = run.proc.filter(pl.col("ts_ns") <= ts_ns)
    exited = proc.filter(pl.col("event") == "exit").select("pid")
    # the recorder's own exec row (no comm) holds the argv; the tracepoint's holds the file
    execs = (
        proc.filter((pl.col("event") == "exec") & pl.col("comm").is_not_null())
        .sort("ts_ns")
        .group_by("pid")
        .agg(pl.col("text").last().alias("path"), pl.col("ts_ns").last().alias("t_exec"))
    )
    maps = (
        run.mappings.filter(
            (pl.col("event") == "mmap") & pl.col("path").is_not_null() & (pl.col("ts_ns") <= ts_ns)
        )
        .join(execs.select("pid", "t_exec"), on="pid", how="left")
        .filter(pl.col("t_exec").is_null() | (pl.col("ts_ns") >= pl.col("t_exec")))
        .select("pid", "path")
    )
    live = pl.concat([execs.select("pid", "path"), maps]).join(exited, on="pid", how="anti")
    return set(live.get_column("path").drop_nulls().to_list())


def diff_runs(
    a: RunData, b: RunData, rep_a: dict[str, Any], rep_b: dict[str, Any]
) -> dict[str, Any]:
    kv_a, kv_b = rep_a["sizing"]["kv"], rep_b["sizing"]["kv"]
    phases = align(rep_a["phases"], rep_b["phases"])
    at_sizing = kv_a is not None and kv_b is not None
    ta = kv_a["query_ts_ns"] if at_sizing else a.t_end_ns
    tb = kv_b["query_ts_ns"] if at_sizing else b.t_end_ns

    ca, cb = kind_charges(a), kind_charges(b)
    by_kind = _by(level_at(ca, ["kind"], ta), level_at(cb, ["kind"], tb), "kind")
    for r in by_kind:
        r["label"] = KIND_LABEL.get(r["key"], r["key"])
    removed_a, removed_b = removed_cgroups(a), removed_cgroups(b)
    by_cgroup = _by(
        _named(_cgroup_levels(ca, ta, removed_a), a),
        _named(_cgroup_levels(cb, tb, removed_b), b),
        "cgroup",
    )
    for r in by_cgroup:  # a cgroup gone before the instant is compared as it last lived
        for side, run, removed in (("a", a, removed_a), ("b", b, removed_b)):
            gone = [t for cg, t in removed.items() if run.cgroup_name(cg) == r["key"]]
            t_gone = min(gone, default=None)
            if t_gone is not None and t_gone < (ta if side == "a" else tb):
                r[f"{side}_removed_t_s"] = run.rel_s(t_gone)
    by_process = _by(level_at(ca, ["comm"], ta), level_at(cb, ["comm"], tb), "comm")
    fa, fb = file_deltas(a), file_deltas(b)
    by_file = _by(level_at(fa, ["path"], ta), level_at(fb, ["path"], tb), "path")
    # where and when B's pages of each file were charged (for the conclusion)
    b_spans = (
        fb.filter((pl.col("ts_ns") <= tb) & (pl.col("bytes") > 0))
        .group_by("path")
        .agg(
            pl.col("cgroup_id").mode().first(),
            pl.col("ts_ns").min().alias("t_first"),
            pl.col("ts_ns").max().alias("t_last"),
        )
    )
    spans = {r["path"]: r for r in b_spans.to_dicts()}
    b_scope = scope_cgroups(b)
    b_mapped = mapped_at(b, tb)
    for r in by_file:
        s = spans.get(r["key"])
        # charged to a cgroup the command ran in (or the run tells none): a file the conclusion
        # may name; a log dockerd wrote in its own cgroup is listed, not named
        r["b_in_scope"] = bool(s) and (not b_scope or s["cgroup_id"] in b_scope)
        r["b_mapped"] = r["key"] in b_mapped  # mapped by a live process: not droppable then
        r["b_cgroup"] = b.cgroup_name(s["cgroup_id"]) if s else None
        r["b_cgroup_path"] = b.cgroup_path(s["cgroup_id"]) if s else None
        r["b_first_t_s"] = b.rel_s(s["t_first"]) if s else None
        r["b_last_t_s"] = b.rel_s(s["t_last"]) if s else None

    own_a = int(own_file_deltas(a).filter(pl.col("ts_ns") <= ta)["bytes"].sum() or 0)
    own_b = int(own_file_deltas(b).filter(pl.col("ts_ns") <= tb)["bytes"].sum() or 0)

    charged = sum(r["difference"] for r in by_kind)
    signal = None
    decomposition: dict[str, Any] = {
        "at": "sizing_query" if at_sizing else "end",
        "a_t_s": a.rel_s(ta),
        "b_t_s": b.rel_s(tb),
        "by_kind": by_kind,
        "by_cgroup": by_cgroup,
        "by_process": by_process,
        "by_file": by_file,
        # shim records and spool: the tracer's overhead, kept out of the ranked files
        "own_files": {"a_bytes": own_a, "b_bytes": own_b, "difference": own_b - own_a},
        "charged_difference_bytes": charged,
        # CUDA memory, B - A: on unified memory it comes out of the same pool as page cache
        "cuda": cuda_memory_difference(a, b, ta, tb),
    }
    if at_sizing:
        sig_a, sig_b = kv_a["signal"], kv_b["signal"]
        delta = kv_a["query_free_bytes"] - kv_b["query_free_bytes"]
        device = _device_signal(sig_b, b) or _device_signal(sig_a, a)
        baseline = None
        cuda_dev = None
        host = None
        per_cpu = None
        if device:
            cuda_dev = device_bytes_at(b, tb) - device_bytes_at(a, ta)
            explained = cuda_dev
            # the negative control: host memory moved, the device signal did not count it
            host = host_memory_difference(a, b, ta, tb)
        else:
            fa0, fb0 = _first_memfree(a), _first_memfree(b)
            baseline = fa0 - fb0 if fa0 is not None and fb0 is not None else None
            ga, gb = _per_cpu_growth(a, ta), _per_cpu_growth(b, tb)
            per_cpu = gb - ga if ga is not None and gb is not None else None
            explained = charged + (baseline or 0) + (per_cpu or 0)
        signal = {
            "a_signal": sig_a,
            "b_signal": sig_b,
            "same_signal": sig_a == sig_b,
            "a_free_bytes": kv_a["query_free_bytes"],
            "b_free_bytes": kv_b["query_free_bytes"],
            "difference_bytes": delta,
            "device_memory": device,
            "unified_memory": {
                "a": a.meta.gpu.unified_memory,
                "b": b.meta.gpu.unified_memory,
            },
        }
        decomposition.update(
            {
                "signal_difference_bytes": delta,
                "baseline_bytes": baseline,
                "per_cpu_free_bytes": per_cpu,
                "cuda_device_bytes": cuda_dev,
                "host_memory": host,
                "explained_bytes": explained,
                "unexplained_bytes": delta - explained,
            }
        )
    else:
        decomposition.update(
            {
                "signal_difference_bytes": None,
                "baseline_bytes": None,
                "per_cpu_free_bytes": None,
                "cuda_device_bytes": None,
                "host_memory": None,
                "explained_bytes": None,
                "unexplained_bytes": None,
            }
        )

    return {
        "phases": phases,
        "unmatched_phases": [p["name"] for p in phases if not p["matched"]],
        "signal": signal,
        "decomposition": decomposition,
        "peak_end": _peak_end(rep_a["attribution"], rep_b["attribution"]),
        "kv": _kv(rep_a["sizing"], rep_b["sizing"]),
    }


def _peak_end(att_a: dict[str, Any], att_b: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    ta, tb = att_a.get("total") or {}, att_b.get("total") or {}
    rows.append(_pe("all charged memory", ta, tb))
    ka = {r["kind"]: r for r in att_a["by_kind"]}
    kb = {r["kind"]: r for r in att_b["by_kind"]}
    for kind in [k for k in KIND_LABEL if k in ka or k in kb]:
        rows.append(_pe(KIND_LABEL[kind], ka.get(kind, {}), kb.get(kind, {})))
    return rows


def _pe(what: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    pa, pb, ea, eb = (a.get("peak", 0), b.get("peak", 0), a.get("end", 0), b.get("end", 0))
    return {
        "what": what,
        "a_peak": pa,
        "b_peak": pb,
        "peak_difference": pb - pa,
        "a_end": ea,
        "b_end": eb,
        "end_difference": eb - ea,
    }


def _kv(sa: dict[str, Any], sb: dict[str, Any]) -> dict[str, Any]:
    ka, kb = sa["kv"], sb["kv"]
    la, lb = sa.get("log_kv"), sb.get("log_kv")
    return {
        "a_bytes": ka["bytes"] if ka else None,
        "b_bytes": kb["bytes"] if kb else None,
        "difference_bytes": kb["bytes"] - ka["bytes"] if ka and kb else None,
        "a_fraction": ka["fraction"] if ka else None,
        "b_fraction": kb["fraction"] if kb else None,
        "a_log_bytes": la["bytes"] if la else None,
        "b_log_bytes": lb["bytes"] if lb else None,
        "a_rule": ka["rule"] if ka else None,
        "b_rule": kb["rule"] if kb else None,
        # "KV cache" only on evidence (sizing.py)
        "what": ka["what"] if ka and kb and ka["what"] == kb["what"] else "large allocation",
    }
