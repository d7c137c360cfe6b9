"""Advice: after the decomposition, the actions that would have given B the KV size A got.

Each action carries the bytes it recovers *as measured in the recording* (never a model of
what might happen), the KV size B would have got with it, the share of the A - B gap it closes,
the risk, and the command line to use. Ranked: among the actions that close at least half
of the gap, the safest first; then the others, by the share of the gap they close.

  reclaim   drop the clean page cache of the named files charged to B before sizing
            (`uvmtrace record --reclaim-before-sizing`): the bytes are those files' page cache
            charged to B's cgroups at the sizing query (B - A, as in the decomposition).
  signal    size from another signal, from the what-if table (sizing.py): its value at the
            query times the same fraction.
  setting   the framework's KV fraction that gives A's size from B's signal: exact by
            construction; the risk is what the fraction leaves for the rest.
A container flag is advised only where a sweep of flags was recorded (none is inferred).

Every action raises the KV size, so the workload allocates more: when B's KV cgroup has a memory
limit (`docker run --memory`), each action whose KV would not fit under it (memory_limit.py: what
B held that the kernel cannot reclaim, plus the KV gain) carries a warning with the limit it
needs; without raising the limit the container would be OOM-killed.

Consumes the sizing output (analysis/sizing.py) and the diff; computes no new sizing.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import polars as pl

from uvmtrace.analysis.load import RunData
from uvmtrace.analysis.memory_limit import needs
from uvmtrace.analysis.units import fmt_bytes

RISK_ORDER = {"none": 0, "low": 1, "medium": 2, "high": 3}
# The KV fraction each framework exposes, by a word of its command line. vLLM's and SGLang's
# rules are not `fraction x free` (docs/sizing.md): the value is the one that gives A's size under
# B's signal with B's own rule, which for them is only an estimate and is said so.
FRACTION_FLAGS = (
    ("kvsizer", "--fraction", True),
    ("demo-workload", "--fraction", True),
    ("trtllm", "--kv_cache_free_gpu_mem_fraction", True),
    ("tensorrt", "--kv_cache_free_gpu_mem_fraction", True),
    ("vllm", "--gpu-memory-utilization", False),
    ("sglang", "--mem-fraction-static", False),
)
HONEST = "the honest headroom"
# Per what-if signal (by its leading words): risk, why, and how a launcher reads it instead.
OTHER_SIGNALS = {
    "MemAvailable": (
        "high",
        "counts every cgroup's clean page cache as free; the kernel reclaims it only under "
        "pressure, and the CUDA driver may fail an allocation first (NV_ERR_NO_MEMORY)",
        "free = MemAvailable of /proc/meminfo",
    ),
    "cgroup headroom": (
        "medium",
        "limit - usage of the cgroup: counts its page cache as used, and ignores the host's "
        "free memory when the host is tighter than the limit",
        "free = memory.max - memory.current of the cgroup (`uvmtrace headroom --json`)",
    ),
    HONEST: (
        "low",
        "counts the cgroup's own clean page cache as free without dropping it: pair it with "
        "the reclaim above (or memory.reclaim) before the allocation",
        "free = uvmtrace.tracer.headroom.headroom().honest_bytes (`uvmtrace headroom --json`)",
    ),
}
MIN_KV_GAIN = 16 << 20  # an action that moves the KV size by less is not advice
# Reclaim costs nothing and frees memory for everything on the host, not only the KV cache:
# it is advice once this much page cache comes back, whatever the KV fraction makes of it.
MIN_RECLAIM = 16 << 20


def reclaims(run: RunData) -> dict[str, Any] | None:
    """What `--reclaim-before-sizing` freed in this run (its `reclaim` rows), or None."""
    rows = run.proc.filter(pl.col("event") == "reclaim")
    if rows.is_empty():
        return None
    details = [json.loads(t) for t in rows["text"].fill_null("{}").to_list()]
    seconds = sum(d.get("seconds", 0.0) for d in details)
    freed = int(rows["bytes"].fill_null(0).sum()) if "bytes" in rows.columns else 0
    return {
        "requests": rows.height,
        "reclaimed_bytes": freed,
        "seconds": round(seconds, 6),
        "files": sorted({f["path"] for d in details for f in d.get("files", []) if f.get("freed")}),
    }


def _fraction_flag(command: str | None) -> tuple[str | None, bool]:
    text = (command or "").lower()
    for word, flag, exact in FRACTION_FLAGS:
        if word in text:
            return flag, exact
    return None, False


def _with_flag(command: str | None, flag: str, value: str) -> str:
    """B's command line with `flag value` set (an existing value replaced, else appended)."""
    argv = shlex.split(command or "CMD")
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            argv[i + 1] = value
            return shlex.join(argv)
        if arg.startswith(flag + "="):
            argv[i] = f"{flag}={value}"
            return shlex.join(argv)
    return shlex.join([*argv, flag, value])


def _action(kind: str, what: str, recovers: int, kv_b: int, fraction: float, **kw: Any) -> dict:
    return {
        "kind": kind,
        "action": what,
        "recovers_bytes": recovers,
        "kv_bytes": kw.pop("kv") if "kv" in kw else kv_b + int(fraction * recovers),
        **kw,
    }


def _reclaim_action(
    files: list[tuple[str, int]],
    kv: dict[str, Any],
    command: str | None,
    done: dict | None,
    cap: int | None = None,
) -> dict[str, Any] | None:
    """`files`: (path, page cache charged to the run's cgroups at the query). `cap`: the page
    cache (memcg kind `file`) the run held then, the kernel's figure: no more can come back,
    whatever the per-file events say."""
    named = [(path, n) for path, n in files if n > 0]
    total = sum(n for _, n in named)
    if cap is not None:
        total = min(total, cap)
    if not named or total < MIN_RECLAIM:
        return None
    names = ", ".join(p for p, _ in named[:3]) + (" ..." if len(named) > 3 else "")
    evidence = (
        f"{fmt_bytes(total)} of page cache of {names} charged to the run's cgroups at the sizing "
        f"query; a MemFree-like signal ({kv['signal']}) counts it as used"
    )
    if done:
        evidence += (
            f"; this run already reclaimed {fmt_bytes(done['reclaimed_bytes'])} in "
            f"{done['seconds'] * 1e3:.1f} ms before sizing"
        )
    return _action(
        "reclaim",
        f"reclaim the clean page cache of {names} before sizing",
        total,
        kv["bytes"],
        kv["fraction"],
        command=f"sudo uvmtrace record --reclaim-before-sizing -o B.parquet -- {command or 'CMD'}",
        risk="none",
        risk_detail="only clean, unmapped pages of files the workload read are dropped; "
        "dirty and mapped pages, anonymous memory and other cgroups' pages are not touched; "
        "a later read of those files comes from disk",
        evidence=evidence,
        files=[p for p, _ in named],
    )


def _signal_actions(kv: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    base = kv["query_free_bytes"] or 0
    for row in kv.get("what_if") or []:
        name = row["signal"]
        if "dropped before sizing" in name:
            name = f"{HONEST} ({kv['signal']} + the cgroup's own clean page cache)"
        spec = next((v for k, v in OTHER_SIGNALS.items() if name.startswith(k)), None)
        gain = row["value_bytes"] - base
        if spec is None or kv["fraction"] * gain < MIN_KV_GAIN:
            continue  # the signal itself, MemFree sampled later, or no real gain
        risk, detail, command = spec
        out.append(
            _action(
                "signal",
                f"size from {name} instead of {kv['signal']}",
                gain,
                kv["bytes"],
                kv["fraction"],
                command=command,
                risk=risk,
                risk_detail=detail,
                evidence=f"{name} was {fmt_bytes(row['value_bytes'])} when "
                f"{kv['signal']} answered {fmt_bytes(base)} (what-if table)",
            )
        )
    return out


def _setting_action(
    kv_a: dict[str, Any], kv_b: dict[str, Any], command: str | None
) -> dict[str, Any] | None:
    free = kv_b["query_free_bytes"]
    if not free or kv_a["bytes"] <= kv_b["bytes"]:
        return None
    needed = kv_a["bytes"] / free
    flag, exact = _fraction_flag(command)
    value = f"{min(needed, 1.0):.3f}"
    leaves = free - kv_a["bytes"]
    if needed >= 1.0:
        risk, detail = "high", "no fraction of B's signal reaches A's size: the signal is too low"
    else:
        risk = "high" if needed >= 0.95 else "medium"
        detail = (
            f"the KV cache would take {needed:.1%} of what {kv_b['signal']} reported, leaving "
            f"{fmt_bytes(leaves)}; the page cache the signal did not count stays charged: if "
            "it is not reclaimed in time the allocation fails (NV_ERR_NO_MEMORY) or a "
            "container with --memory is OOM-killed"
        )
    if not exact and flag:
        detail += f"; {flag} follows another rule than fraction x free: the value is an estimate"
    return _action(
        "setting",
        f"raise the KV fraction from {kv_b['fraction']:g} to {value}",
        int(min(needed, 1.0) * free) - kv_b["bytes"],  # KV bytes gained: no memory is freed
        kv_b["bytes"],
        kv_b["fraction"],
        kv=int(min(needed, 1.0) * free),
        command=_with_flag(command, flag, value)
        if flag
        else f"the framework's KV fraction={value}",
        risk=risk,
        risk_detail=detail,
        evidence=f"A's KV {fmt_bytes(kv_a['bytes'])} / B's {kv_b['signal']} "
        f"{fmt_bytes(free)} = {needed:.3f}",
    )


def _check_limit(actions: list[dict[str, Any]], kv: dict[str, Any]) -> None:
    """A warning on each action whose larger KV does not fit under the KV cgroup's limit."""
    limit = kv.get("memory_limit")
    if not limit:
        return
    for a in actions:
        need = needs(limit, a["kv_bytes"])
        fits = need <= limit["limit_bytes"]
        a["memory_limit"] = {
            "cgroup": limit["cgroup"],
            "limit_bytes": limit["limit_bytes"],
            "needs_bytes": need,
            "fits": fits,
        }
        if fits:
            continue
        mib = -(-need // (1 << 20))
        a["warning"] = (
            f"a KV cache of {fmt_bytes(a['kv_bytes'])} does not fit under the memory limit of "
            f"{limit['cgroup']} ({fmt_bytes(limit['limit_bytes'])}): the run held "
            f"{fmt_bytes(limit['peak_held_bytes'])} the kernel cannot reclaim with a KV of "
            f"{fmt_bytes(limit['kv_bytes'])}, so it needs a limit of at least {fmt_bytes(need)} "
            f"(docker run --memory {mib}m); under the present one it would be OOM-killed"
        )


def _rank(actions: list[dict[str, Any]], kv_b: int, gap: int | None) -> list[dict[str, Any]]:
    """With a gap: among the actions that close at least half of it, the safest first (then
    the most closed); then the others, most closed first. Without: safest, then largest KV."""
    for a in actions:
        closed = min(1.0, max(0.0, (a["kv_bytes"] - kv_b) / gap)) if gap else None
        a["gap_closed"] = None if closed is None else round(closed, 4)

    def key(a: dict[str, Any]) -> tuple[int, float, float]:
        risk = RISK_ORDER[a["risk"]]
        if a["gap_closed"] is None:
            return (0, risk, -a["kv_bytes"])
        if a["gap_closed"] >= 0.5:
            return (0, risk, -a["gap_closed"])
        return (1, -a["gap_closed"], risk)

    ranked = sorted(actions, key=key)
    for i, a in enumerate(ranked, 1):
        a["rank"] = i
    return ranked


def diff_advice(d: dict[str, Any]) -> dict[str, Any]:
    """Advice for `diff`: what would have given B the KV size A got."""
    kv_a, kv_b = d["reports"]["a"]["sizing"]["kv"], d["reports"]["b"]["sizing"]["kv"]
    if kv_a is None or kv_b is None:
        return {"gap_bytes": None, "actions": [], "why": "a run has no KV sizing to compare"}
    gap = kv_a["bytes"] - kv_b["bytes"]
    done = d["reports"]["b"].get("reclaim")
    # Without a gap (B got at least A's size, e.g. host memory moved between the runs) what
    # held B's signal down still did: its actions are listed, ranked without a gap to close.
    why = None if gap > 0 else "B got at least A's KV size; these would still enlarge B's"
    command = d["b"]["command"]
    actions: list[dict[str, Any]] = []
    if not (d.get("signal") or {}).get("device_memory"):
        dec = d["decomposition"]
        file_kind = next((k["b_bytes"] for k in dec["by_kind"] if k["key"] == "file"), 0)
        files = [
            (str(f["key"]), f["b_bytes"])
            for f in dec["by_file"]
            if f.get("b_in_scope") and not f.get("b_mapped")
        ]
        reclaim = _reclaim_action(files, kv_b, command, done, cap=file_kind)
        if reclaim:
            actions.append(reclaim)
    actions += _signal_actions(kv_b)
    setting = _setting_action(kv_a, kv_b, command)
    if setting:
        actions.append(setting)
    _check_limit(actions, kv_b)
    ranked = _rank(actions, kv_b["bytes"], gap if gap > 0 else None)
    return {"gap_bytes": gap, "actions": ranked, "why": why}


def report_advice(rep: dict[str, Any]) -> dict[str, Any]:
    """Advice for `report`: what would have given this run a larger KV cache, measured."""
    kv = rep["sizing"]["kv"]
    if kv is None:
        return {"gap_bytes": None, "actions": [], "why": "no KV sizing found"}
    actions: list[dict[str, Any]] = []
    own = next((r for r in kv.get("what_if") or [] if "dropped before sizing" in r["signal"]), None)
    if own is not None and kv["query_free_bytes"] is not None:
        cached = own["value_bytes"] - kv["query_free_bytes"]
        held = [f for f in rep["attribution"].get("by_file") or [] if (f.get("peak") or 0) > 0]
        label = ", ".join(str(f["path"]) for f in held[:3]) or "its page cache"
        files = [(label, cached)]
        reclaim = _reclaim_action(files, kv, rep["run"]["command"], rep.get("reclaim"))
        if reclaim:
            actions.append(reclaim)
    actions += _signal_actions(kv)
    _check_limit(actions, kv)
    return {"gap_bytes": None, "actions": _rank(actions, kv["bytes"], None), "why": None}


def advice_line(advice: dict[str, Any] | None) -> str | None:
    """The first action, in one sentence, for the conclusion."""
    # a high-risk action stays in the table; the conclusion names only what is safe to do
    actions = [a for a in (advice or {}).get("actions") or [] if a["risk"] != "high"]
    if not actions:
        return None
    a = actions[0]
    closes = f", {a['gap_closed']:.0%} of the gap" if a.get("gap_closed") is not None else ""
    line = (
        f"Fix: {a['action']}: KV {fmt_bytes(a['kv_bytes'])} (+{fmt_bytes(a['recovers_bytes'])} "
        f"free{closes}; risk {a['risk']}); run: {a['command']}"
    )
    if a.get("warning"):
        line += f". Warning: {a['warning']}"
    return line
