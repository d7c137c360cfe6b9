"""Which variant of each probe a recording would use here, as the probes themselves decide it:
`uvmtrace.probes.plan` (the plan `KernelTracer` attaches by) answers, doctor shows it. The
tracepoints doctor checks are those the probes declare (`probes.plan.tracepoints`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uvmtrace.doctor.result import Check, missing, ok, unavailable

NO_MEMCG_FIX = "a kernel >= 6.14 (memcg tracepoints) or one with CONFIG_KPROBES=y"


def load_probe_plan() -> tuple[dict[str, Any] | None, str]:
    """The probes' plan, or (None, why not)."""
    from uvmtrace.probes import plan as probes_plan  # numpy: not on doctor's import path

    try:
        return probes_plan.probe_plan(), ""
    except Exception as exc:  # the plan is advice; doctor must not die of it
        return None, f"probe_plan() failed: {type(exc).__name__}: {exc}"


def probe_tracepoints() -> dict[str, str]:
    """Tracepoints the probes attach to, {"category:event": "required" | "optional"}."""
    from uvmtrace.probes import plan as probes_plan

    return probes_plan.tracepoints()


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


def memcg_variant(plan: dict[str, Any] | None, why_none: str, cgroups: Check) -> Check:
    """How memory charges will be seen (the probes' choice); recording needs one way."""
    name = "memcg variant"
    if plan is None:
        return missing(name, f"not reported: {why_none}", NO_MEMCG_FIX)
    variant = str(plan["memcg_variant"])
    if variant == "sampling" and not cgroups.ok:
        return missing(name, "sampling, but there is no memory cgroup to sample", NO_MEMCG_FIX)
    why = plan["probes"].get("memcg", {}).get("why", "")
    return ok(name, f"{variant}, the probes' choice" + (f": {why}" if why else ""))
