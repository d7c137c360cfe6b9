"""Every kernel probe, declared once: its BPF source, where it attaches (variants and fallback),
its maps (ring buffer, aggregation hash and slots), their record structs (events.h), its
decoder, its loss slot and the recording events it writes.

The loader (`kernel_tracer.KernelTracer`), the capability plan (`plan.py`, which `uvmtrace
doctor` shows) and the decoder are driven from `PROBES`. Conventions the registry test checks
(tests/test_probe_registry.py): the probe's loss slot is `UVM_LOST_<NAME>` in events.h, in the
order of `PROBES`; every program, map and struct named here is in the probe's sources; every
event is described in docs/recording.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from uvmtrace.probes import decode, kernlayout
from uvmtrace.probes import event_dtypes as dt


@dataclass(frozen=True)
class Attachment:
    """One BPF program and where it attaches: `target` is `category:event` or a kernel symbol."""

    fn: str
    target: str
    kind: str = "tracepoint"  # or "raw_tracepoint", "kprobe"
    optional: bool = False  # the probe still works without it
    extra: bool = False  # attached only when the tracer asks for extra events (memcg_events)


@dataclass(frozen=True)
class Raw:
    """The same events attached as raw tracepoints: no trace record is built per event (~300 ns
    per page fault measured here), but the arguments' types and struct offsets must come from
    the kernel's BTF. The classic programs are compiled too, as the fallback at attach time."""

    attachments: tuple[Attachment, ...]
    blocked: Callable[[], str | None]  # why this kernel's BTF does not allow it; None: it does
    source: str | None = None  # the raw programs' own file; None: in the variant's source


@dataclass(frozen=True)
class Variant:
    """One way to attach the probe; the first variant whose required attachments exist is used."""

    name: str  # recorded as the probe's `variant`
    source: str
    attachments: tuple[Attachment, ...]
    why: str = ""  # said when it is chosen
    raw: Raw | None = None


@dataclass(frozen=True)
class Fallback:
    """What the recorder does instead when no variant can attach (the probe is not attached)."""

    variant: str
    why: str


RingDecoder = Callable[[decode.Context, np.ndarray], list[pa.RecordBatch]]
AggDecoder = Callable[[decode.Context, np.ndarray, np.ndarray], list[pa.RecordBatch]]


@dataclass(frozen=True)
class Ring:
    """A BPF ring buffer of fixed-size records (one struct of events.h)."""

    map: str
    struct: str  # C struct name in events.h; its numpy dtype is event_dtypes.C_STRUCTS[struct]
    decode: RingDecoder
    small: bool = False  # low rate: bpfsource.SMALL_RING_PAGES, not the --ringbuf-pages size
    raw_only: bool = False  # compiled with --raw only (otherwise the probe aggregates)

    @property
    def dtype(self) -> np.dtype:
        return dt.C_STRUCTS[self.struct]


@dataclass(frozen=True)
class Aggregation:
    """Sums per key and time bucket: per-CPU slots (`struct agg_slot`) on the hot path, flushed
    into a hash of complete entries (`key` -> `struct agg_val`)."""

    map: str
    key: str  # C struct name of the hash key in events.h
    slots: str  # the per-CPU slot array
    nslots: int
    slot_fields: Mapping[str, np.ndarray | str]  # key field -> slot field, or value per slot
    decode: AggDecoder
    aggregated_only: bool = False  # with --raw the probe writes its ring instead

    @property
    def dtype(self) -> np.dtype:
        return dt.C_STRUCTS[self.key]


@dataclass(frozen=True)
class Probe:
    name: str
    doc: str
    variants: tuple[Variant, ...]
    events: tuple[str, ...]  # what it adds to the recording (`event` column)
    ring: Ring | None = None
    agg: Aggregation | None = None
    fallback: Fallback | None = None
    missing_note: str = ""  # added to the reason when it cannot attach

    @property
    def hot(self) -> bool:
        """Whether it chooses between raw and classic tracepoints (metadata `attach`)."""
        return any(v.raw is not None for v in self.variants)


_MEMCG_SLOT = np.arange(3 * dt.ITEM_SLOTS)  # enum uvm_memcg_kind x item

PROC = Probe(
    "proc",
    "fork / exec / exit of traced processes and cgroup_mkdir; the process tree that "
    "scopes every other probe",
    (
        Variant(
            "tracepoint",
            "proc.bpf.c",
            (
                Attachment("tp_task_newtask", "task:task_newtask"),
                Attachment("tp_process_exit", "sched:sched_process_exit"),
                Attachment("tp_process_exec", "sched:sched_process_exec", optional=True),
                Attachment("tp_exit_group", "syscalls:sys_enter_exit_group", optional=True),
                Attachment("tp_cgroup_mkdir", "cgroup:cgroup_mkdir", optional=True),
            ),
        ),
    ),
    events=("fork", "exec", "exit", "cgroup_mkdir"),
    ring=Ring("proc_rb", "proc_rec", decode.proc_records, small=True),
)

MEMCG = Probe(
    "memcg",
    "cgroup memory charges: every update of a memcg statistic, and vm events per cgroup",
    (
        Variant(
            "tracepoint",
            "memcg_tp.bpf.c",
            (
                Attachment("tp_memcg_state", "memcg:mod_memcg_state"),
                Attachment("tp_memcg_lruvec", "memcg:mod_memcg_lruvec_state"),
                Attachment(
                    "tp_memcg_events", "memcg:count_memcg_events", optional=True, extra=True
                ),
            ),
            why="memcg tracepoints present (kernel >= 6.14)",
            raw=Raw(
                (
                    Attachment("raw_memcg_state", "memcg:mod_memcg_state", "raw_tracepoint"),
                    Attachment(
                        "raw_memcg_lruvec", "memcg:mod_memcg_lruvec_state", "raw_tracepoint"
                    ),
                    Attachment(
                        "raw_memcg_events",
                        "memcg:count_memcg_events",
                        "raw_tracepoint",
                        optional=True,
                        extra=True,
                    ),
                ),
                blocked=lambda: kernlayout.raw_layout().memcg_why,
                source="memcg_raw.bpf.c",
            ),
        ),
        Variant(
            "kprobe",
            "memcg_kprobe.bpf.c",
            (
                Attachment("kp_memcg_state", "__mod_memcg_state", "kprobe"),
                Attachment("kp_memcg_lruvec", "__mod_memcg_lruvec_state", "kprobe"),
                Attachment(
                    "kp_memcg_events",
                    "__count_memcg_events",
                    "kprobe",
                    optional=True,
                    extra=True,
                ),
            ),
            why="kprobes on the memcg stat functions instead",
        ),
    ),
    events=("memcg_charge", "memcg_event"),
    ring=Ring("memcg_rb", "memcg_rec", decode.memcg_records, raw_only=True),
    agg=Aggregation(
        "memcg_agg",
        "memcg_key",
        "memcg_slots",
        _MEMCG_SLOT.size,
        {
            "cgroup_id": "key2",
            "item": _MEMCG_SLOT % dt.ITEM_SLOTS,
            "kind": _MEMCG_SLOT // dt.ITEM_SLOTS,
        },
        decode.memcg_sums,
        aggregated_only=True,
    ),
    fallback=Fallback("sampling", "memory.stat is sampled instead"),
)

PAGE_FAULT = Probe(
    "page_fault",
    "user page faults of traced processes (x86 exception tracepoints)",
    (
        Variant(
            "tracepoint",
            "faults.bpf.c",
            (
                Attachment("tp_fault_user", "exceptions:page_fault_user"),
                Attachment("tp_fault_kernel", "exceptions:page_fault_kernel", optional=True),
            ),
            raw=Raw(
                (
                    Attachment("raw_fault_user", "exceptions:page_fault_user", "raw_tracepoint"),
                    Attachment(
                        "raw_fault_kernel",
                        "exceptions:page_fault_kernel",
                        "raw_tracepoint",
                        optional=True,
                    ),
                ),
                blocked=lambda: kernlayout.raw_layout().fault_why,
            ),
        ),
    ),
    events=("page_fault",),
    ring=Ring("fault_rb", "fault_rec", decode.fault_records, raw_only=True),
    agg=Aggregation(
        "fault_agg",
        "fault_key",
        "fault_slots",
        dt.FAULT_SLOTS,
        {"code": np.arange(dt.FAULT_SLOTS)},
        decode.fault_sums,
        aggregated_only=True,
    ),
    # arm64 (GH200, GB10) has no exceptions:* tracepoints.
    missing_note=" (x86-only tracepoints)",
)

MAPPINGS = Probe(
    "mappings",
    "mmap / munmap / mremap / brk / madvise of traced processes, with their results",
    (
        Variant(
            "tracepoint",
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
    ),
    events=dt.MAPPING_CALLS,
    ring=Ring("mapping_rb", "mapping_rec", decode.mapping_records),
)

FILEMAP = Probe(
    "filemap",
    "pages entering and leaving the page cache for traced processes, per file",
    (
        Variant(
            "tracepoint",
            "filemap.bpf.c",
            (
                Attachment("tp_filemap_add", "filemap:mm_filemap_add_to_page_cache"),
                Attachment("tp_filemap_delete", "filemap:mm_filemap_delete_from_page_cache"),
            ),
        ),
    ),
    events=dt.FILEMAP_EVENTS,
    agg=Aggregation(
        "filemap_agg",
        "filemap_key",
        "filemap_slots",
        len(dt.FILEMAP_EVENTS),
        {"ino": "owner", "dev": "key2", "kind": np.arange(len(dt.FILEMAP_EVENTS))},
        decode.filemap_sums,
    ),
)

QUERIES = Probe(
    "queries",
    "memory queries: sysinfo() with what it returned, opens of /proc/meminfo and "
    "memory.* cgroup files",
    (
        Variant(
            "tracepoint",
            "queries.bpf.c",
            (
                Attachment("tp_sysinfo_enter", "syscalls:sys_enter_sysinfo"),
                Attachment("tp_sysinfo_exit", "syscalls:sys_exit_sysinfo"),
                Attachment("tp_openat_enter", "syscalls:sys_enter_openat", optional=True),
                Attachment("tp_openat_exit", "syscalls:sys_exit_openat", optional=True),
            ),
        ),
    ),
    events=("sysinfo", "openat"),
    ring=Ring("query_rb", "query_rec", decode.query_records, small=True),
)

PROBES: dict[str, Probe] = {
    p.name: p for p in (PROC, MEMCG, PAGE_FAULT, MAPPINGS, FILEMAP, QUERIES)
}
ALL_PROBES = frozenset(PROBES)
# The `lost` array's slots (enum uvm_lost): one per probe, then full scope maps.
LOST_SLOTS = (*PROBES, "scope")


def sources(probe: Probe) -> set[str]:
    """Every BPF file a probe may compile."""
    out = set()
    for v in probe.variants:
        out.add(v.source)
        if v.raw is not None and v.raw.source is not None:
            out.add(v.raw.source)
    return out
