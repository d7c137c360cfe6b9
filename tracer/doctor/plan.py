"""Which variant of each probe a recording would use here.

The probes decide that themselves (`uvmtrace.probes.capabilities.probe_plan()`); doctor shows their
answer. When that module is absent or fails, doctor still states the memcg variant from its own
checks, because recording is impossible without one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from uvmtrace.tracer.doctor.result import Check, missing, ok

MEMCG_TRACEPOINTS = (
    "memcg:mod_memcg_state",
    "memcg:mod_memcg_lruvec_state",
    "memcg:count_memcg_events",
)
NO_VARIANT = (None, "", "none", "unavailable")
NO_MEMCG_FIX = "a kernel >= 6.14 (memcg tracepoints) or one with CONFIG_KPROBES=y"


def load_probe_plan() -> tuple[dict[str, dict[str, Any]] | None, str]:
    """{probe: {"variant", "why"}} from the probes, or (None, why not)."""
    try:
        from uvmtrace.probes.capabilities import probe_plan
    except ImportError as exc:
        return None, f"uvmtrace.probes.capabilities is not available ({exc})"
    try:
        return _normalise(probe_plan()), ""
    except Exception as exc:  # the plan is advice; doctor must not die of it
        return None, f"probe_plan() failed: {type(exc).__name__}: {exc}"


def _normalise(plan: Any) -> dict[str, dict[str, Any]]:
    """Accept the shapes a plan may reasonably take: a mapping of probe -> (variant, why) / dict /
    dataclass, or an iterable of objects that carry their own `name`."""
    items: Iterable[tuple[str, Any]]
    if isinstance(plan, Mapping):
        items = plan.items()
    else:
        items = ((str(_field(p, "name", "probe")), p) for p in plan)
    out = {}
    for name, entry in items:
        if isinstance(entry, tuple | list):
            variant, why = (list(entry) + [None, ""])[:2]
        elif isinstance(entry, str) or entry is None:
            variant, why = entry, ""
        else:
            variant, why = _field(entry, "variant", "chosen"), _field(entry, "why", "reason")
        out[str(name)] = {"variant": variant, "why": str(why or "")}
    return out


def _field(entry: Any, *names: str) -> Any:
    if dataclasses.is_dataclass(entry) and not isinstance(entry, type):
        entry = dataclasses.asdict(entry)
    for n in names:
        if isinstance(entry, Mapping) and n in entry:
            return entry[n]
        if hasattr(entry, n):
            return getattr(entry, n)
    return None


def plan_checks(plan: dict[str, dict[str, Any]] | None, why_none: str) -> list[Check]:
    if plan is None:
        return [Check("probe variants", "unavailable", f"not reported: {why_none}")]
    checks = []
    for name, entry in plan.items():
        variant, why = entry["variant"], entry["why"]
        label = f"probe {name}"
        if variant in NO_VARIANT:
            checks.append(Check(label, "unavailable", why or "no usable variant here"))
        else:
            checks.append(ok(label, f"{variant}" + (f": {why}" if why else "")))
    return checks


def memcg_variant(
    plan: dict[str, dict[str, Any]] | None,
    tracepoints: dict[str, Check],
    kprobes: Check,
    cgroups: Check,
) -> Check:
    """The way memory charges will be seen; recording needs one."""
    name = "memcg variant"
    if plan is not None and "memcg" in plan:
        variant = plan["memcg"]["variant"]
        if variant not in NO_VARIANT:
            return ok(name, f"{variant} (chosen by the probes)")
        return missing(name, plan["memcg"]["why"] or "the probes found no variant", NO_MEMCG_FIX)
    if all(tp in tracepoints and tracepoints[tp].ok for tp in MEMCG_TRACEPOINTS):
        return ok(name, "tracepoint: every charge, with cgroup, pid and stat item")
    if kprobes.ok:
        return ok(name, "kprobe on the memcg stat functions (no memcg tracepoints here)")
    if cgroups.ok:
        return ok(name, "sampling memory.stat: totals per cgroup, no per-process attribution")
    return missing(
        name,
        "no memcg tracepoints, no kprobes and no memory cgroup to sample",
        NO_MEMCG_FIX,
    )
