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


# -- struct layouts and tracepoint prototypes ------------------------------------------------------
# Kinds whose btf_type `type` field points at another type we may follow.
KIND_INT, KIND_PTR, KIND_STRUCT, KIND_UNION = 1, 2, 4, 5
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 8, 9, 10, 11
KIND_FUNC_PROTO, KIND_TYPE_TAG = 13, 18
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)


class BtfTypes:
    """The type section of a BTF blob, indexed by type id, for member offsets and prototypes.

    BCC compiles against installed kernel headers that may be older than the running kernel, so
    any struct a probe reads by offset takes that offset from here, never from a header."""

    def __init__(self, blob: bytes) -> None:
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
        if magic != BTF_MAGIC:
            raise UserError("not a little-endian BTF blob (bad magic)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<4I", blob, 8)
        self._strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
        # id -> (kind, name_off, size_or_type, kind_flag, members [(name_off, type, bit_off)])
        self._types: list[tuple[int, int, int, bool, list[tuple[int, int, int]]]] = [
            (0, 0, 0, False, [])  # id 0 is void
        ]
        self._by_name: dict[tuple[int, str], int] = {}
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, size_or_type = struct.unpack_from("<3I", blob, pos)
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
            pos += 12
            members: list[tuple[int, int, int]] = []
            if kind in (KIND_STRUCT, KIND_UNION):
                for i in range(vlen):
                    members.append(struct.unpack_from("<3I", blob, pos + 12 * i))
            elif kind == KIND_FUNC_PROTO:
                for i in range(vlen):
                    m_name, m_type = struct.unpack_from("<2I", blob, pos + 8 * i)
                    members.append((m_name, m_type, 0))
            tid = len(self._types)
            self._types.append((kind, name_off, size_or_type, kflag, members))
            if name_off:
                self._by_name.setdefault((kind, self.name(name_off)), tid)
            pos += _KIND_FIXED.get(kind, 0) + _KIND_PER_MEMBER.get(kind, 0) * vlen

    def name(self, off: int) -> str:
        return self._strings[off : self._strings.index(b"\0", off)].decode()

    def find(self, kind: int, name: str) -> int | None:
        return self._by_name.get((kind, name))

    def resolve(self, tid: int) -> int:
        """Follow typedefs and qualifiers to the type they stand for."""
        while self._types[tid][0] in _MODIFIERS:
            tid = self._types[tid][2]
        return tid

    def _member(self, tid: int, name: str) -> tuple[int, int] | None:
        """(bit offset, type id) of `name` in struct/union `tid`, looking into anonymous members."""
        kind, _n, _s, kflag, members = self._types[self.resolve(tid)]
        if kind not in (KIND_STRUCT, KIND_UNION):
            return None
        for m_name, m_type, m_off in members:
            bit_off = m_off & 0xFFFFFF if kflag else m_off
            if m_name and self.name(m_name) == name:
                return bit_off, m_type
            if not m_name:
                inner = self._member(m_type, name)
                if inner is not None:
                    return bit_off + inner[0], inner[1]
        return None

    def offset_of(self, struct_name: str, path: str) -> int | None:
        """Byte offset of a dotted member path inside `struct struct_name` (None: not there)."""
        tid = self.find(KIND_STRUCT, struct_name)
        if tid is None:
            return None
        total = 0
        for part in path.split("."):
            found = self._member(tid, part)
            if found is None:
                return None
            total, tid = total + found[0], found[1]
        return None if total % 8 else total // 8

    def pointee_struct(self, tid: int) -> str | None:
        """Name of the struct a pointer type points at."""
        kind, _n, target, _f, _m = self._types[self.resolve(tid)]
        if kind != KIND_PTR:
            return None
        kind, name_off, _s, _f, _m = self._types[self.resolve(target)]
        return self.name(name_off) if kind == KIND_STRUCT and name_off else None

    def tracepoint_args(self, event: str) -> list[int] | None:
        """Type ids of a tracepoint's arguments as a raw tracepoint program sees them (the kernel
        declares `typedef void (*btf_trace_<event>)(void *__data, args...)`)."""
        tid = self.find(KIND_TYPEDEF, f"btf_trace_{event}")
        if tid is None:
            return None
        kind, _n, target, _f, _m = self._types[self.resolve(self._types[tid][2])]
        if kind != KIND_PTR:
            return None
        kind, _n, _s, _f, params = self._types[self.resolve(target)]
        if kind != KIND_FUNC_PROTO or not params:
            return None
        return [p[1] for p in params[1:]]


@functools.lru_cache(maxsize=4)
def read_types(path: str = VMLINUX_BTF) -> BtfTypes:
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as exc:
        raise UserError(f"cannot read kernel BTF {path}: {exc.strerror}") from None
    return BtfTypes(blob)
