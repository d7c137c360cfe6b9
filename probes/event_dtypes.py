"""numpy dtypes of the records in events.h, and its enums (the test compiles events.h and
compares offsets and values)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

COMM = "S16"
PATH = "S128"


def _struct(*fields: tuple[str, str]) -> np.dtype:
    return np.dtype(list(fields), align=True)


AGG_VAL = _struct(("sum", "<i8"), ("count", "<u8"), ("tid", "<u4"), ("pad", "<u4"), ("comm", COMM))
PID_SCOPE = _struct(("root", "<u4"), ("pad", "<u4"), ("via_cgroup", "<u8"))
MEMCG_KEY = _struct(
    ("bucket", "<u8"),
    ("cgroup_id", "<u8"),
    ("pid", "<u4"),
    ("item", "<i4"),
    ("kind", "<u4"),
    ("seq", "<u4"),
)
MEMCG_REC = _struct(
    ("ts", "<u8"),
    ("cgroup_id", "<u8"),
    ("val", "<i8"),
    ("pid", "<u4"),
    ("tid", "<u4"),
    ("item", "<i4"),
    ("kind", "<u4"),
    ("comm", COMM),
)
FAULT_KEY = _struct(
    ("bucket", "<u8"), ("pid", "<u4"), ("code", "<u4"), ("seq", "<u4"), ("pad", "<u4")
)
FAULT_REC = _struct(
    ("ts", "<u8"), ("addr", "<u8"), ("ip", "<u8"), ("code", "<u8"), ("pid", "<u4"), ("tid", "<u4")
)
MAPPING_REC = _struct(
    ("ts", "<u8"),
    ("addr", "<u8"),
    ("len", "<u8"),
    ("arg", "<u8"),
    ("ret", "<i8"),
    ("pid", "<u4"),
    ("tid", "<u4"),
    ("fd", "<i4"),
    ("prot", "<u4"),
    ("flags", "<u4"),
    ("call", "<u4"),
    ("comm", COMM),
)
FILEMAP_KEY = _struct(
    ("bucket", "<u8"),
    ("ino", "<u8"),
    ("dev", "<u4"),
    ("pid", "<u4"),
    ("kind", "<u4"),
    ("seq", "<u4"),
)
AGG_SLOT = _struct(
    ("bucket", "<u8"),
    ("owner", "<u8"),
    ("key2", "<u8"),
    ("sum", "<i8"),
    ("count", "<u8"),
    ("pid", "<u4"),
    ("tid", "<u4"),
    ("comm", COMM),
)
ITEM_SLOTS = 256
FAULT_SLOTS = 32
QUERY_REC = _struct(
    ("ts", "<u8"),
    ("total", "<u8"),
    ("free", "<u8"),
    ("ret", "<i8"),
    ("pid", "<u4"),
    ("tid", "<u4"),
    ("kind", "<u4"),
    ("pad", "<u4"),
    ("comm", COMM),
    ("path", PATH),
)
PROC_REC = _struct(
    ("ts", "<u8"),
    ("cgroup_id", "<u8"),
    ("pid", "<u4"),
    ("tid", "<u4"),
    ("ppid", "<u4"),
    ("kind", "<u4"),
    ("code", "<i4"),
    ("level", "<i4"),
    ("root", "<i4"),
    ("pad", "<u4"),
    ("comm", COMM),
    ("text", PATH),
)

# C struct name -> dtype, for the layout test.
C_STRUCTS: dict[str, np.dtype] = {
    "pid_scope": PID_SCOPE,
    "agg_val": AGG_VAL,
    "agg_slot": AGG_SLOT,
    "memcg_key": MEMCG_KEY,
    "memcg_rec": MEMCG_REC,
    "fault_key": FAULT_KEY,
    "fault_rec": FAULT_REC,
    "mapping_rec": MAPPING_REC,
    "filemap_key": FILEMAP_KEY,
    "query_rec": QUERY_REC,
    "proc_rec": PROC_REC,
}


# enums of events.h that the decoder relies on (checked by the layout test too)
class Config(IntEnum):
    """Slots of the BPF `config` array (enum uvm_config): what the loader tells the programs."""

    WATCH_CGROUPS = 0  # new memory cgroups become targets
    MEMORY_HIERARCHY = 1  # hierarchy id of the memory controller, as cgroup_mkdir's `root`
    SELF = 2  # the recorder's tgid: never traced
    ADOPT_CHILD_OF = 3  # trace the next child this tgid forks


MEMCG_STATE, MEMCG_LRUVEC, MEMCG_EVENT = 0, 1, 2
PROC_FORK, PROC_EXEC, PROC_EXIT, PROC_MKDIR = 0, 1, 2, 3
QUERY_SYSINFO, QUERY_OPENAT = 0, 1
MAPPING_CALLS = ("mmap", "munmap", "mremap", "brk", "madvise")
FILEMAP_EVENTS = ("filemap_add", "filemap_delete")
NO_CODE = -(2**31)
C_ENUMS: dict[str, int] = {
    "UVM_MEMCG_STATE": MEMCG_STATE,
    "UVM_MEMCG_LRUVEC": MEMCG_LRUVEC,
    "UVM_MEMCG_EVENT": MEMCG_EVENT,
    "UVM_PROC_FORK": PROC_FORK,
    "UVM_PROC_EXEC": PROC_EXEC,
    "UVM_PROC_EXIT": PROC_EXIT,
    "UVM_PROC_MKDIR": PROC_MKDIR,
    "UVM_QUERY_SYSINFO": QUERY_SYSINFO,
    "UVM_QUERY_OPENAT": QUERY_OPENAT,
    "UVM_MMAP": 0,
    "UVM_MADVISE": MAPPING_CALLS.index("madvise"),
    "UVM_FILEMAP_DELETE": FILEMAP_EVENTS.index("filemap_delete"),
    "UVM_NO_CODE": NO_CODE,
    "UVM_ITEM_SLOTS": ITEM_SLOTS,
    "UVM_FAULT_SLOTS": FAULT_SLOTS,
    **{f"UVM_CONFIG_{slot.name}": int(slot) for slot in Config},
    "UVM_CONFIG_SLOTS": len(Config),
}
