"""What this host can trace: whether the probes can start at all, and whether one attachment
(registry.Attachment) can be made here. Which variant each probe uses is plan.py's answer.

Pure inspection (host/: tracefs, kallsyms, BTF): nothing is compiled or attached, so
`uvmtrace doctor` can ask the same questions cheaply, with or without root.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from uvmtrace.host import tracefs
from uvmtrace.probes import kernlayout

if TYPE_CHECKING:
    from uvmtrace.probes.registry import Attachment

NO_TRACEFS = "tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing"
NO_ROOT = "kernel probes need root (run uvmtrace with sudo)"


def btf_missing() -> str | None:
    """Why the probes cannot name memcg items from the kernel's BTF here, or None."""
    from uvmtrace.recording.errors import UserError

    try:
        kernlayout.item_names()
    except UserError as exc:
        return str(exc)
    return None


def start_blockers() -> dict[str, str]:
    """What the kernel probes cannot start without, {requirement: why it is missing here}; empty
    when nothing is. `KernelTracer.start()` refuses with these reasons (the recording then has no
    kernel stream) and `uvmtrace doctor` blocks on the same requirements: "root", "tracefs",
    "BTF" (memcg item names; no fallback)."""
    blockers: dict[str, str] = {}
    root = os.geteuid() == 0
    if not root:
        blockers["root"] = NO_ROOT
    # A user cannot see into tracefs: no verdict without root.
    if root and tracefs.mount_point() is None:
        blockers["tracefs"] = NO_TRACEFS
    why = btf_missing()
    if why is not None:
        blockers["BTF"] = why
    return blockers


@functools.lru_cache(maxsize=1)
def kernel_symbols() -> frozenset[str]:
    try:
        with open("/proc/kallsyms") as f:
            return frozenset(line.split()[2] for line in f)
    except OSError:
        return frozenset()


def attachment_missing(att: Attachment) -> str | None:
    """Why `att` cannot attach here, or None."""
    if att.kind in ("tracepoint", "raw_tracepoint"):
        if not tracefs.tracepoint_exists(att.target):
            return f"no tracepoint {att.target}"
        if att.kind == "raw_tracepoint" and not kernlayout.optional_event_ok(event_of(att)):
            return f"{att.target}: arguments not as expected (kernel BTF)"
        return None
    if not tracefs.kprobes_available():
        return "kernel has no kprobes (CONFIG_KPROBES / CONFIG_KPROBE_EVENTS off)"
    if att.target not in kernel_symbols():
        return f"no kernel symbol {att.target}"
    return None


def event_of(att: Attachment) -> str:
    """`memcg:mod_memcg_state` -> `mod_memcg_state`, the name a raw tracepoint attaches to."""
    return att.target.partition(":")[2]
