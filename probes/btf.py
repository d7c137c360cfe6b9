"""Read enums from the running kernel's BTF (/sys/kernel/btf/vmlinux).

Stat item numbers in the memcg tracepoints index `enum node_stat_item`, `enum memcg_stat_item`
(which continues node_stat_item's numbering) and `enum vm_event_item`; their order changes between
kernel versions and configs, so names always come from the kernel that produced the events.
Format: Documentation/bpf/btf.rst (header, then a type section and a string section).
"""

from __future__ import annotations

import functools
import struct

from uvmtrace.recording.errors import UserError

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

# Bytes that follow `struct btf_type` (12 bytes) for each kind: fixed part + per-member part.
_KIND_FIXED = {1: 4, 3: 12, 14: 4, 17: 4}
_KIND_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
KIND_ENUM = 6
KIND_ENUM64 = 19

# Tracepoint item numbers are looked up in these enums (memcg_stat_item starts where
# node_stat_item ends, so both decode mod_memcg_state items).
STAT_ENUMS = ("node_stat_item", "memcg_stat_item")
EVENT_ENUMS = ("vm_event_item",)


@functools.lru_cache(maxsize=4)
def read_enums(path: str = VMLINUX_BTF) -> dict[str, dict[int, str]]:
    """All named enums of a BTF blob: enum name -> {value: enumerator name}."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as exc:
        raise UserError(f"cannot read kernel BTF {path}: {exc.strerror}") from None
    return parse_enums(blob)


def parse_enums(blob: bytes) -> dict[str, dict[int, str]]:
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
    if magic != BTF_MAGIC:
        raise UserError("not a little-endian BTF blob (bad magic)")
    type_off, type_len, str_off, str_len = struct.unpack_from("<4I", blob, 8)
    types_at, strings_at = hdr_len + type_off, hdr_len + str_off
    strings = blob[strings_at : strings_at + str_len]

    def name(off: int) -> str:
        return strings[off : strings.index(b"\0", off)].decode()

    enums: dict[str, dict[int, str]] = {}
    pos, end = types_at, types_at + type_len
    while pos < end:
        name_off, info, _size = struct.unpack_from("<3I", blob, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        pos += 12
        if kind in (KIND_ENUM, KIND_ENUM64) and name_off:
            width = _KIND_PER_MEMBER[kind]
            values: dict[int, str] = {}
            for i in range(vlen):
                m = pos + i * width
                if kind == KIND_ENUM:
                    off, val = struct.unpack_from("<Ii", blob, m)
                else:
                    off, lo, hi = struct.unpack_from("<3I", blob, m)
                    val = lo | (hi << 32)
                # Aliases such as NR_LRU_BASE = NR_INACTIVE_ANON: keep the item, not the marker.
                if val not in values or values[val].endswith("_BASE"):
                    values[val] = name(off)
            enums[name(name_off)] = values
        pos += _KIND_FIXED.get(kind, 0) + _KIND_PER_MEMBER.get(kind, 0) * vlen
    return enums


def item_names(path: str = VMLINUX_BTF) -> tuple[dict[int, str], dict[int, str]]:
    """(stat item number -> name, vm event number -> name) for the running kernel."""
    enums = read_enums(path)
    missing = [e for e in (*STAT_ENUMS, *EVENT_ENUMS) if e not in enums]
    if missing:
        raise UserError(f"kernel BTF lacks enum {', '.join(missing)}: cannot name memcg items")
    stats: dict[int, str] = {}
    for e in STAT_ENUMS:
        # NR_VM_NODE_STAT_ITEMS shares its value with the first memcg item: keep the real item.
        for val, nm in enums[e].items():
            if not nm.startswith("NR_VM_") or val not in stats:
                stats[val] = nm
    return stats, dict(enums[EVENT_ENUMS[0]])


def unit_bytes(name: str, page_size: int) -> int:
    """Bytes per unit of a stat item's value: `_B` items are bytes, `_KB` KiB, others pages."""
    if name.endswith("_B"):
        return 1
    if name.endswith("_KB"):
        return 1024
    return page_size
