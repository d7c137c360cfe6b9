"""What this host can trace, and which variant of each probe the loader would use (and why).

Pure inspection of tracefs, kallsyms, BTF and cgroupfs: nothing is compiled or attached, so
`uvmtrace doctor` can call `probe_plan()` cheaply, with or without root.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from uvmtrace.host import tracefs
from uvmtrace.probes import kernlayout


@dataclass(frozen=True)
class Attachment:
    """One BPF program and where it attaches: `target` is `category:event` or a kernel symbol."""

    fn: str
    target: str
    kind: str = "tracepoint"  # or "raw_tracepoint", "kprobe"
    optional: bool = False  # the probe still works without it


MEMCG_TRACEPOINTS = (
    Attachment("tp_memcg_state", "memcg:mod_memcg_state"),
    Attachment("tp_memcg_lruvec", "memcg:mod_memcg_lruvec_state"),
    Attachment("tp_memcg_events", "memcg:count_memcg_events", optional=True),
)
# Same events attached raw: no trace record is built per update (see memcg_raw.bpf.c).
MEMCG_RAW_TRACEPOINTS = (
    Attachment("raw_memcg_state", "memcg:mod_memcg_state", "raw_tracepoint"),
    Attachment("raw_memcg_lruvec", "memcg:mod_memcg_lruvec_state", "raw_tracepoint"),
    Attachment("raw_memcg_events", "memcg:count_memcg_events", "raw_tracepoint", optional=True),
)
MEMCG_KPROBES = (
    Attachment("kp_memcg_state", "__mod_memcg_state", "kprobe"),
    Attachment("kp_memcg_lruvec", "__mod_memcg_lruvec_state", "kprobe"),
    Attachment("kp_memcg_events", "__count_memcg_events", "kprobe", optional=True),
)

FAULT_TRACEPOINTS = (
    Attachment("tp_fault_user", "exceptions:page_fault_user"),
    Attachment("tp_fault_kernel", "exceptions:page_fault_kernel", optional=True),
)
FAULT_RAW_TRACEPOINTS = (
    Attachment("raw_fault_user", "exceptions:page_fault_user", "raw_tracepoint"),
    Attachment("raw_fault_kernel", "exceptions:page_fault_kernel", "raw_tracepoint", optional=True),
)

# probe name -> (BPF source file, attachments); memcg picks its attachments by variant.
PROBES: dict[str, tuple[str, tuple[Attachment, ...]]] = {
    "proc": (
        "scope.bpf.c",
        (
            Attachment("tp_task_newtask", "task:task_newtask"),
            Attachment("tp_process_exit", "sched:sched_process_exit"),
            Attachment("tp_process_exec", "sched:sched_process_exec", optional=True),
            Attachment("tp_exit_group", "syscalls:sys_enter_exit_group", optional=True),
            Attachment("tp_cgroup_mkdir", "cgroup:cgroup_mkdir", optional=True),
        ),
    ),
    "memcg": ("memcg_tp.bpf.c", MEMCG_TRACEPOINTS),
    "page_fault": ("faults.bpf.c", FAULT_TRACEPOINTS),
    "mappings": (
        "mappings.bpf.c",
        (
            Attachment("tp_mmap_enter", "syscalls:sys_enter_mmap"),
            Attachment("tp_mapping_exit", "syscalls:sys_exit_mmap"),
            Attachment("tp_munmap_enter", "syscalls:sys_enter_munmap"),
            Attachment("tp_mapping_exit", "syscalls:sys_exit_munmap"),
            Attachment("tp_mremap_enter", "syscalls:sys_enter_mremap", optional=True),
            Attachment("tp_mapping_exit", "syscalls:sys_exit_mremap", optional=True),
            Attachment("tp_brk_enter", "syscalls:sys_enter_brk", optional=True),
            Attachment("tp_mapping_exit", "syscalls:sys_exit_brk", optional=True),
            Attachment("tp_madvise_enter", "syscalls:sys_enter_madvise", optional=True),
            Attachment("tp_mapping_exit", "syscalls:sys_exit_madvise", optional=True),
        ),
    ),
    "filemap": (
        "filemap.bpf.c",
        (
            Attachment("tp_filemap_add", "filemap:mm_filemap_add_to_page_cache"),
            Attachment("tp_filemap_delete", "filemap:mm_filemap_delete_from_page_cache"),
        ),
    ),
    "queries": (
        "queries.bpf.c",
        (
            Attachment("tp_sysinfo_enter", "syscalls:sys_enter_sysinfo"),
            Attachment("tp_sysinfo_exit", "syscalls:sys_exit_sysinfo"),
            Attachment("tp_openat_enter", "syscalls:sys_enter_openat", optional=True),
            Attachment("tp_openat_exit", "syscalls:sys_exit_openat", optional=True),
        ),
    ),
}
ALL_PROBES = frozenset(PROBES)


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


def memcg_variant() -> tuple[str, str]:
    """(`tracepoint` | `kprobe` | `sampling`, why). How the tracepoints attach: attach_mode()."""
    missing = [w for a in MEMCG_TRACEPOINTS if not a.optional if (w := attachment_missing(a))]
    if not missing:
        return "tracepoint", "memcg tracepoints present (kernel >= 6.14)"
    kp_missing = [w for a in MEMCG_KPROBES if not a.optional if (w := attachment_missing(a))]
    if not kp_missing:
        return "kprobe", f"{missing[0]}; kprobes on the memcg stat functions instead"
    return "sampling", f"{missing[0]}; {kp_missing[0]}: memory.stat is sampled instead"


def attach_mode(probe: str) -> tuple[str, str]:
    """(`raw_tracepoint` | `tracepoint`, why) for a probe on hot tracepoints (memcg, page_fault).

    Raw is preferred: a classic tracepoint program first has the kernel build the trace record
    (~300 ns per page fault measured here); raw needs the arguments' types and struct offsets
    from BTF, and falls back to classic when BTF lacks them."""
    layout = kernlayout.raw_layout()
    why_not = layout.memcg_why if probe == "memcg" else layout.fault_why
    if why_not is None:
        return "raw_tracepoint", "arguments and struct offsets from kernel BTF"
    return "tracepoint", f"not raw: {why_not}"


def memcg_attachments(variant: str, mode: str = "tracepoint") -> tuple[str, tuple[Attachment, ...]]:
    if variant == "kprobe":
        return "memcg_kprobe.bpf.c", MEMCG_KPROBES
    if mode == "raw_tracepoint":
        return "memcg_raw.bpf.c", MEMCG_RAW_TRACEPOINTS
    return "memcg_tp.bpf.c", MEMCG_TRACEPOINTS


def fault_attachments(mode: str) -> tuple[Attachment, ...]:
    return FAULT_RAW_TRACEPOINTS if mode == "raw_tracepoint" else FAULT_TRACEPOINTS


def probe_plan() -> dict:
    """Which variant of each probe would be used, and why; for `uvmtrace doctor`.

    {"bcc": {"ok", "why"}, "btf": {"ok", "why"}, "tracefs": path|None, "kernel_headers": path|None,
     "memcg_variant": ..., "probes": {name: {"variant", "available", "why", "missing_optional"}}}
    """
    from uvmtrace.host import bcc, btf
    from uvmtrace.recording.errors import UserError

    plan: dict = {
        "tracefs": tracefs.mount_point(),
        "kernel_headers": bcc.kernel_headers_dir(),
        "root": False,
    }
    plan["root"] = os.geteuid() == 0
    try:
        bcc.import_bcc()
        plan["bcc"] = {"ok": True, "why": ""}
    except UserError as exc:
        plan["bcc"] = {"ok": False, "why": str(exc)}
    btf_why = btf_missing()
    plan["btf"] = {"ok": btf_why is None, "why": btf_why or btf.VMLINUX_BTF}
    variant, variant_why = memcg_variant()
    plan["memcg_variant"] = variant
    probes: dict[str, dict] = {}
    for name, (_src, atts) in PROBES.items():
        entry: dict = {"variant": "tracepoint"}
        if name in ("memcg", "page_fault"):
            entry["attach"], entry["attach_why"] = attach_mode(name)
        if name == "memcg":
            entry["variant"] = variant
            if variant == "tracepoint":
                atts = memcg_attachments(variant, entry["attach"])[1]
            else:
                atts = memcg_attachments(variant)[1] if variant != "sampling" else ()
        elif name == "page_fault":
            atts = fault_attachments(entry["attach"])
        required = [w for a in atts if not a.optional if (w := attachment_missing(a))]
        entry["missing_optional"] = [w for a in atts if a.optional if (w := attachment_missing(a))]
        entry["available"] = not required and (name != "memcg" or variant != "sampling")
        entry["why"] = variant_why if name == "memcg" else "; ".join(required)
        if name == "page_fault" and required:
            # arm64 (GH200, GB10) has no exceptions:* tracepoints.
            entry["why"] += " (x86-only tracepoints)"
        probes[name] = entry
    plan["probes"] = probes
    return plan
