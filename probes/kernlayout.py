"""Struct member offsets and raw tracepoint prototypes of the running kernel, from its BTF.

Raw tracepoint programs get a tracepoint's C arguments instead of its trace record, so they must
know what those arguments are and read kernel structs by offset. Both come from
/sys/kernel/btf/vmlinux at load time and reach the BPF text as -D defines (UVM_OFF_*); where BTF
lacks something, the probe keeps its classic tracepoint variant and says why.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from uvmtrace.probes import btf
from uvmtrace.recording.errors import UserError

# define -> (struct, member path): the chain cgroup_id(memcg->css.cgroup) follows
MEMCG_OFFSETS = {
    "UVM_OFF_MEMCG_CGROUP": ("mem_cgroup", "css.cgroup"),
    "UVM_OFF_CGROUP_KN": ("cgroup", "kn"),
    "UVM_OFF_KERNFS_ID": ("kernfs_node", "id"),
}
FAULT_OFFSETS = {"UVM_OFF_PT_REGS_IP": ("pt_regs", "ip")}
# current->cgroups->subsys[memory_cgrp_id]->cgroup->kn->id: the current task's memory cgroup,
# so that only a member of a watched cgroup is adopted (memcg.bpf.c current_in_memcg)
MEMBER_OFFSETS = {
    "UVM_OFF_TASK_CGROUPS": ("task_struct", "cgroups"),
    "UVM_OFF_CSS_SET_SUBSYS": ("css_set", "subsys"),
    "UVM_OFF_CSS_CGROUP": ("cgroup_subsys_state", "cgroup"),
    "UVM_OFF_CGROUP_KN": ("cgroup", "kn"),
    "UVM_OFF_KERNFS_ID": ("kernfs_node", "id"),
}
MEMCG_EVENTS = ("mod_memcg_state", "mod_memcg_lruvec_state", "count_memcg_events")
FAULT_EVENTS = ("page_fault_user", "page_fault_kernel")


@dataclass(frozen=True)
class RawLayout:
    """What the raw tracepoint variants need; `*_why` is None where a variant can be built."""

    defines: dict[str, int] = field(default_factory=dict)
    memcg_why: str | None = "not checked"
    fault_why: str | None = "not checked"


def _offsets(types: btf.BtfTypes, wanted: dict[str, tuple[str, str]]) -> tuple[dict, str | None]:
    found = {}
    for define, (struct_name, path) in wanted.items():
        off = types.offset_of(struct_name, path)
        if off is None:
            return {}, f"BTF has no struct {struct_name} member {path}"
        found[define] = off
    return found, None


def _args_are(types: btf.BtfTypes, event: str, pointee: dict[int, str], nargs: int) -> str | None:
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


def _enum_value(path: str, enum: str, name: str) -> int | None:
    try:
        values = btf.read_enums(path).get(enum, {})
    except UserError:
        return None
    return next((v for v, n in values.items() if n == name), None)


@functools.lru_cache(maxsize=4)
def raw_layout(path: str = btf.VMLINUX_BTF) -> RawLayout:
    try:
        types = btf.read_types(path)
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
    memory_id = _enum_value(path, "cgroup_subsys_id", "memory_cgrp_id")
    if member_why is None and memory_id is not None:
        defines.update(member_offsets, UVM_MEMORY_CGRP_ID=memory_id)
    return RawLayout(defines=defines, memcg_why=memcg_why, fault_why=fault_why)


def optional_event_ok(event: str, path: str = btf.VMLINUX_BTF) -> bool:
    """count_memcg_events / page_fault_kernel: same argument shape as their required siblings."""
    try:
        types = btf.read_types(path)
    except UserError:
        return False
    if event in MEMCG_EVENTS:
        return _args_are(types, event, {0: "mem_cgroup"}, 3) is None
    return _args_are(types, event, {1: "pt_regs"}, 3) is None
