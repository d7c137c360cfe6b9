"""The catalogue of sizing rules frameworks use, each a formula over one memory query's answer
(free, total) and the memory the process already held (used). Facts from the frameworks' public
source (docs/sizing.md):

  fraction_of_free              KV = f x free                TensorRT-LLM free_gpu_memory_fraction
                                                             (under UVM: sysinfo().freeram)
  fraction_of_total             pool = f x total             XLA/JAX preallocation (default 0.75)
  fraction_of_total_minus_used  KV = f x total - used        vLLM gpu_memory_utilization (used:
                                                             weights + peak activations + non-torch)
  free_minus_fraction_of_total  KV = free - (1 - f) x total  SGLang mem_fraction_static

Every formula is linear in f, so the fraction a measured size implies is exact, and the residual
in bytes is |implied - f| x the formula's base (free for the first rule, total for the others).
"""

from __future__ import annotations

import polars as pl

from uvmtrace.analysis.units import fmt_bytes

RULES = (
    "fraction_of_free",
    "fraction_of_total",
    "fraction_of_total_minus_used",
    "free_minus_fraction_of_total",
)
UNKNOWN = "unknown"
RULE_ORDER = {r: i for i, r in enumerate(RULES)}


def implied_fraction(rule: str) -> pl.Expr:
    """The f that makes the rule give exactly `bytes`, from columns bytes, free_bytes,
    total_bytes, used_bytes; null where the rule cannot apply (no total, nothing used)."""
    b, free, total, used = (pl.col(c) for c in ("bytes", "free_bytes", "total_bytes", "used_bytes"))
    if rule == "fraction_of_free":
        return b / free
    if rule == "fraction_of_total":
        return b / total
    if rule == "fraction_of_total_minus_used":
        # with nothing used it is fraction_of_total: left to that rule
        return pl.when(used > 0).then((b + used) / total)
    if rule == "free_minus_fraction_of_total":
        return pl.when(b < free).then(1 - (free - b) / total)
    raise ValueError(rule)


def predicted_bytes(rule: str) -> pl.Expr:
    """The size the rule gives at the column `fraction`, from columns free_bytes, total_bytes,
    used_bytes (the centre of the window a size must fall in to fit); null where the rule
    cannot apply, as in `implied_fraction`."""
    f, free, total, used = (
        pl.col(c) for c in ("fraction", "free_bytes", "total_bytes", "used_bytes")
    )
    if rule == "fraction_of_free":
        return f * free
    if rule == "fraction_of_total":
        return f * total
    if rule == "fraction_of_total_minus_used":
        return pl.when(used > 0).then(f * total - used)
    if rule == "free_minus_fraction_of_total":
        return free - (1 - f) * total
    raise ValueError(rule)


def base(rule: str) -> pl.Expr:
    """What the fraction multiplies: residual bytes = |implied - f| x base."""
    return pl.col("free_bytes" if rule == "fraction_of_free" else "total_bytes")


def predicted(rule: str, f: float, free: int | None, total: int | None, used: int) -> int | None:
    """The size the rule gives for these inputs (None where it needs what is unknown)."""
    if rule == "fraction_of_free":
        return None if free is None else int(f * free)
    if total is None:
        return None
    if rule == "fraction_of_total":
        return int(f * total)
    if rule == "fraction_of_total_minus_used":
        return int(f * total) - used
    if rule == "free_minus_fraction_of_total":
        return None if free is None else free - int((1 - f) * total)
    raise ValueError(rule)


def reads_free(rule: str) -> bool:
    """Whether the rule's result moves with the free figure (what-ifs make sense for it)."""
    return rule in ("fraction_of_free", "free_minus_fraction_of_total")


def formula(rule: str, f: float, free: int | None, total: int | None, used: int | None) -> str:
    """The rule with its numbers, as a reader checks it: `0.9 x 36.5 GiB free`."""
    if rule == "fraction_of_free":
        return f"{f:g} x {fmt_bytes(free)} free"
    if rule == "fraction_of_total":
        return f"{f:g} x {fmt_bytes(total)} total"
    if rule == "fraction_of_total_minus_used":
        return f"{f:g} x {fmt_bytes(total)} total - {fmt_bytes(used)} the process already held"
    if rule == "free_minus_fraction_of_total":
        return f"{fmt_bytes(free)} free - (1 - {f:g}) x {fmt_bytes(total)} total"
    return rule
