"""What the probes take from the running kernel's BTF (host/btf.py): the names of memcg stat
items and vm events, struct member offsets and raw tracepoint prototypes.

Stat item numbers in the memcg tracepoints index `enum node_stat_item`, `enum memcg_stat_item`
(which continues node_stat_item's numbering) and `enum vm_event_item`; their order changes between
kernel versions and configs, so names always come from the kernel that produced the events.

Raw tracepoint programs get a tracepoint's C arguments instead of its trace record, so they must
know what those arguments are and read kernel structs by offset. Both come from
/sys/kernel/btf/vmlinux at load time and reach the BPF text as -D defines (UVM_OFF_*); where BTF
lacks something, the probe keeps its classic tracepoint variant and says why.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from uvmtrace.host import btf
from uvmtrace.recording.errors import UserError

# Tracepoint item numbers are looked up in these enums (memcg_stat_item starts where
# node_stat_item ends, so both decode mod_memcg_state items).
STAT_ENUMS = ("node_stat_item", "memcg_stat_item")
EVENT_ENUMS = ("vm_event_item",)

# define -> (struct, member path): the chain cgroup_id(memcg->css.cgroup) follows
MEMCG_OFFSETS = {
    "UVM_OFF_MEMCG_CGROUP": ("mem_cgroup", "css.cgroup"),
    "UVM_OFF_CGROUP_KN": ("cgroup", "kn"),
    "UVM_OFF_KERNFS_ID": ("kernfs_node", "id"),
}
FAULT_OFFSETS = {"UVM_OFF_PT_REGS_IP": ("pt_regs", "ip")}
# current->cgroups->subsys[memory_cgrp_id]->cgroup->kn->id: the current task's memory cgroup,
# so that only a member of a watched cgroup is adopted (memcg.bpf.h current_in_memcg)
MEMBER_OFFSETS = {
    "UVM_OFF_TASK_CGROUPS": ("task_struct", "cgroups"),
    "UVM_OFF_CSS_SET_SUBSYS": ("css_set", "subsys"),
    "UVM_OFF_CSS_CGROUP": ("cgroup_subsys_state", "cgroup"),
    "UVM_OFF_CGROUP_KN": ("cgroup", "kn"),
    "UVM_OFF_KERNFS_ID": ("kernfs_node", "id"),
}
MEMCG_EVENTS = ("mod_memcg_state", "mod_memcg_lruvec_state", "count_memcg_events")
FAULT_EVENTS = ("page_fault_user", "page_fault_kernel")


def item_names(path: str = btf.VMLINUX_BTF) -> tuple[dict[int, str], dict[int, str]]:
    """(stat item number -> name, vm event number -> name) for the running kernel."""
    types = btf.read(path)
    enums = {e: types.enum(e) for e in (*STAT_ENUMS, *EVENT_ENUMS)}
    missing = [e for e, values in enums.items() if values is None]
    if missing:
        raise UserError(f"kernel BTF lacks enum {', '.join(missing)}: cannot name memcg items")
    stats: dict[int, str] = {}
    for e in STAT_ENUMS:
        # NR_VM_NODE_STAT_ITEMS shares its value with the first memcg item: keep the real item.
        for val, nm in (enums[e] or {}).items():
            if not nm.startswith("NR_VM_") or val not in stats:
                stats[val] = nm
    return stats, dict(enums[EVENT_ENUMS[0]] or {})


def unit_bytes(name: str, page_size: int) -> int:
    """Bytes per unit of a stat item's value: `_B` items are bytes, `_KB` KiB, others pages."""
    if name.endswith("_B"):
        return 1
    if name.endswith("_KB"):
        return 1024
    return page_size


@dataclass(frozen=True)
class RawLayout:
    """What the raw tracepoint variants need; `*_why` is None where a variant can be built."""

    defines: dict[str, int] = field(default_factory=dict)
    memcg_why: str | None = "not checked"
    fault_why: str | None = "not checked"


def _offsets(types: btf.Btf, wanted: dict[str, tuple[str, str]]) -> tuple[dict, str | None]:
    found = {}
    for define, (struct_name, path) in wanted.items():
        off = types.offset_of(struct_name, path)
        if off is None:
            return {}, f"BTF has no struct {struct_name} member {path}"
        found[define] = off
    return found, None


def _args_are(types: btf.Btf, event: str, pointee: dict[int, str], nargs: int) -> str | None:
    """Why `event`'s raw arguments are not (nargs args, arg i pointing at struct pointee[i])."""
    args = types.tracepoint_args(event)
    if args is None:
        return f"BTF has no prototype for tracepoint {event}"
    if len(args) != nargs:
        return f"tracepoint {event} takes {len(args)} arguments, expected {nargs}"
    for i, name in pointee.items():
        got = types.pointee_struct(args[i])
        if got != name:
            return f"tracepoint {event} argument {i} is {got or 'not a struct pointer'}, not {name}"
    return None


@functools.lru_cache(maxsize=4)
def raw_layout(path: str = btf.VMLINUX_BTF) -> RawLayout:
    try:
        types = btf.read(path)
    except UserError as exc:
        return RawLayout(memcg_why=str(exc), fault_why=str(exc))
    defines: dict[str, int] = {}
    memcg_offsets, memcg_why = _offsets(types, MEMCG_OFFSETS)
    for event in MEMCG_EVENTS[:2]:  # count_memcg_events is optional, checked on its own
        memcg_why = memcg_why or _args_are(types, event, {0: "mem_cgroup"}, 3)
    if memcg_why is None:
        defines.update(memcg_offsets)
    fault_offsets, fault_why = _offsets(types, FAULT_OFFSETS)
    fault_why = fault_why or _args_are(types, FAULT_EVENTS[0], {1: "pt_regs"}, 3)
    if fault_why is None:
        defines.update(fault_offsets)
    member_offsets, member_why = _offsets(types, MEMBER_OFFSETS)
    memory_id = types.enum_value("cgroup_subsys_id", "memory_cgrp_id")
    if member_why is None and memory_id is not None:
        defines.update(member_offsets, UVM_MEMORY_CGRP_ID=memory_id)
    return RawLayout(defines=defines, memcg_why=memcg_why, fault_why=fault_why)


def optional_event_ok(event: str, path: str = btf.VMLINUX_BTF) -> bool:
    """count_memcg_events / page_fault_kernel: same argument shape as their required siblings."""
    try:
        types = btf.read(path)
    except UserError:
        return False
    if event in MEMCG_EVENTS:
        return _args_are(types, event, {0: "mem_cgroup"}, 3) is None
    return _args_are(types, event, {1: "pt_regs"}, 3) is None
