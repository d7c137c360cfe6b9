"""Which variant of each probe a recording would use here, as the probes themselves decide it.

`uvmtrace.probes.capabilities.probe_plan()` answers (a dict: "memcg_variant" and, under "probes",
{name: {"variant", "available", "why", "missing_optional"}}). doctor shows that answer and takes
the extra tracepoints the probes attach to from `capabilities.PROBES`. When the module is absent
or fails, doctor still states the memcg variant from its own checks, because recording is
impossible without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uvmtrace.doctor.result import Check, missing, ok, unavailable

MEMCG_TRACEPOINTS = (
    "memcg:mod_memcg_state",
    "memcg:mod_memcg_lruvec_state",
    "memcg:count_memcg_events",
)
MEMCG_VARIANTS = ("tracepoint", "kprobe", "sampling")
NO_MEMCG_FIX = "a kernel >= 6.14 (memcg tracepoints) or one with CONFIG_KPROBES=y"


def load_probe_plan() -> tuple[dict[str, Any] | None, str]:
    """The probes' plan, or (None, why not)."""
    try:
        from uvmtrace.probes.capabilities import probe_plan
    except ImportError as exc:
        return None, f"uvmtrace.probes.capabilities is not available ({exc})"
    try:
        plan = probe_plan()
    except Exception as exc:  # the plan is advice; doctor must not die of it
        return None, f"probe_plan() failed: {type(exc).__name__}: {exc}"
    if not isinstance(plan, Mapping) or not isinstance(plan.get("probes"), Mapping):
        return None, "probe_plan() answered in an unknown shape"
    return dict(plan), ""


def probe_tracepoints() -> dict[str, str]:
    """Tracepoints the probes attach to, {"category:event": "required" | "optional"}; empty when
    the probes do not say."""
    try:
        from uvmtrace.probes.capabilities import PROBES
    except ImportError:
        return {}
    out: dict[str, str] = {}
    try:
        for _source, attachments in PROBES.values():
            for att in attachments:
                if getattr(att, "kind", "tracepoint") == "tracepoint":
                    need = "optional" if getattr(att, "optional", False) else "required"
                    if out.get(att.target) != "required":
                        out[att.target] = need
    except (TypeError, ValueError, AttributeError):
        return {}
    return out


def plan_checks(plan: dict[str, Any] | None, why_none: str) -> list[Check]:
    """One line per probe: the variant it would use, or why it cannot attach."""
    if plan is None:
        return [unavailable("probe variants", f"not reported: {why_none}")]
    checks = []
    for name, entry in plan["probes"].items():
        entry = entry if isinstance(entry, Mapping) else {"variant": entry, "available": True}
        variant, why = entry.get("variant"), str(entry.get("why") or "")
        label = f"probe {name}"
        if not entry.get("available", True):
            # memcg without tracepoints or kprobes falls back to sampling: less detail, still works.
            checks.append(unavailable(label, why or "cannot attach here", f"variant: {variant}"))
            continue
        detail = str(variant) + (f": {why}" if why else "")
        lost = entry.get("missing_optional") or []
        if lost:
            detail += f" (without: {'; '.join(map(str, lost))})"
        checks.append(ok(label, detail))
    return checks


def memcg_variant(
    plan: dict[str, Any] | None, tracepoints: dict[str, Check], kprobes: Check, cgroups: Check
) -> Check:
    """How memory charges will be seen; recording needs one way."""
    name = "memcg variant"
    if plan is not None and plan.get("memcg_variant") is not None:
        variant = str(plan["memcg_variant"])
        if variant == "sampling" and not cgroups.ok:
            return missing(name, "sampling, but there is no memory cgroup to sample", NO_MEMCG_FIX)
        if variant in MEMCG_VARIANTS:
            why = plan["probes"].get("memcg", {}).get("why", "")
            return ok(name, f"{variant}, the probes' choice" + (f": {why}" if why else ""))
        return missing(name, f"the probes found no way: {variant}", NO_MEMCG_FIX)
    if all(tp in tracepoints and tracepoints[tp].ok for tp in MEMCG_TRACEPOINTS[:2]):
        return ok(name, "tracepoint: every charge, with cgroup, pid and stat item")
    if kprobes.ok:
        return ok(name, "kprobe on the memcg stat functions (no memcg tracepoints here)")
    if cgroups.ok:
        return ok(name, "sampling memory.stat: totals per cgroup, no per-process attribution")
    return missing(
        name, "no memcg tracepoints, no kprobes and no memory cgroup to sample", NO_MEMCG_FIX
    )
