"""Which variant of each probe this host would use, and why: the one plan that `KernelTracer`
attaches by and `uvmtrace doctor` shows.

Pure inspection (capabilities.attachment_missing: tracefs, kallsyms, kernel BTF): nothing is
compiled or attached, so doctor can call it cheaply, with or without root.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from uvmtrace.probes import capabilities
from uvmtrace.probes.registry import PROBES, Attachment, Probe

RAW_WHY = "arguments and struct offsets from kernel BTF"


@dataclass
class ProbePlan:
    name: str
    available: bool
    variant: str = "tracepoint"
    why: str = ""
    attach: str = ""  # probes with raw variants: "raw_tracepoint" | "tracepoint" | "kprobe"
    attach_why: str = ""
    attachments: tuple[Attachment, ...] = ()
    classic: tuple[Attachment, ...] = ()  # raw: what to attach instead if the kernel refuses
    sources: tuple[str, ...] = ()  # BPF files to compile
    missing_optional: list[str] = field(default_factory=list)


def required_missing(attachments: Iterable[Attachment]) -> list[str]:
    return [w for a in attachments if not a.optional if (w := capabilities.attachment_missing(a))]


def plan_probe(probe: Probe, *, extras: bool = True) -> ProbePlan:
    """The first variant whose required attachments all exist here (raw when the kernel's BTF
    allows it); else the probe's fallback, or why it cannot attach. `extras`: keep the
    attachments marked `extra` (memcg:count_memcg_events)."""
    skipped: list[list[str]] = []
    for variant in probe.variants:
        missing = required_missing(variant.attachments)
        if not missing:
            break
        skipped.append(missing)
    else:
        if probe.fallback is not None:
            why = "; ".join(m[0] for m in skipped) + ": " + probe.fallback.why
            return ProbePlan(probe.name, False, probe.fallback.variant, why)
        return ProbePlan(
            probe.name, False, probe.variants[0].name, "; ".join(skipped[0]) + probe.missing_note
        )
    why = "; ".join([m[0] for m in skipped] + ([variant.why] if variant.why else []))
    attachments, classic, sources = variant.attachments, (), (variant.source,)
    attach = attach_why = ""
    if variant.raw is not None:
        blocked = variant.raw.blocked()
        if blocked is None and not required_missing(variant.raw.attachments):
            attach, attach_why = "raw_tracepoint", RAW_WHY
            attachments, classic = variant.raw.attachments, attachments
            if variant.raw.source is not None:
                sources = (variant.source, variant.raw.source)
        else:
            why_not = blocked or required_missing(variant.raw.attachments)[0]
            attach, attach_why = "tracepoint", f"not raw: {why_not}"
    elif probe.hot:
        attach = variant.name
    if not extras and any(a.extra for a in attachments):
        dropped = sorted({a.target for a in attachments if a.extra})
        attachments = tuple(a for a in attachments if not a.extra)
        classic = tuple(a for a in classic if not a.extra)
        note = f"without {', '.join(dropped)} (aggregated mode; --raw records it)"
        why = f"{why}; {note}" if why else note
    missing_optional = [
        w for a in attachments if a.optional if (w := capabilities.attachment_missing(a))
    ]
    return ProbePlan(
        probe.name,
        True,
        variant.name,
        why,
        attach,
        attach_why,
        attachments,
        classic,
        sources,
        missing_optional,
    )


def plan(names: Iterable[str] | None = None, *, extras: bool = True) -> dict[str, ProbePlan]:
    """The plan of each named probe (all by default), in registry order."""
    wanted = set(PROBES if names is None else names)
    return {name: plan_probe(p, extras=extras) for name, p in PROBES.items() if name in wanted}


def probe_plan() -> dict:
    """The plan as plain data, for `uvmtrace doctor`: {"memcg_variant": ..., "probes": {name:
    {"variant", "available", "why", "missing_optional", ["attach", "attach_why"]}}}."""
    plans = plan()
    probes = {}
    for name, p in plans.items():
        entry: dict = {
            "variant": p.variant,
            "available": p.available,
            "why": p.why,
            "missing_optional": p.missing_optional,
        }
        if p.attach:
            entry["attach"], entry["attach_why"] = p.attach, p.attach_why
        probes[name] = entry
    return {"memcg_variant": plans["memcg"].variant, "probes": probes}


def tracepoints() -> dict[str, str]:
    """Every tracepoint a probe may attach to (classic; raw ones are the same events),
    {"category:event": "required" | "optional"}: what doctor checks."""
    out: dict[str, str] = {}
    for probe in PROBES.values():
        for variant in probe.variants:
            for att in variant.attachments:
                if att.kind == "tracepoint" and out.get(att.target) != "required":
                    out[att.target] = "optional" if att.optional else "required"
    return out
