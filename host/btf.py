"""The running kernel's BTF (/sys/kernel/btf/vmlinux), read once: its enums, struct members,
tracepoint prototypes and function type ids.

Format (Documentation/bpf/btf.rst): a header, then a type section of variable-length records (a
12-byte `struct btf_type` and a kind-specific tail), then a string section. Type ids count the
records from 1 (0 is void).
"""

from __future__ import annotations

import functools
import struct

from uvmtrace.recording.errors import UserError

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 8, 9, 10, 11
KIND_FUNC, KIND_FUNC_PROTO, KIND_TYPE_TAG, KIND_ENUM64 = 12, 13, 18, 19
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)

# Bytes that follow the 12-byte btf_type, per kind: (fixed part, per member (x vlen)).
_TAIL = {
    1: (4, 0),  # INT
    2: (0, 0),  # PTR
    3: (12, 0),  # ARRAY
    4: (0, 12),  # STRUCT
    5: (0, 12),  # UNION
    6: (0, 8),  # ENUM
    7: (0, 0),  # FWD
    8: (0, 0),  # TYPEDEF
    9: (0, 0),  # VOLATILE
    10: (0, 0),  # CONST
    11: (0, 0),  # RESTRICT
    12: (0, 0),  # FUNC
    13: (0, 8),  # FUNC_PROTO
    14: (4, 0),  # VAR
    15: (0, 12),  # DATASEC
    16: (0, 0),  # FLOAT
    17: (4, 0),  # DECL_TAG
    18: (0, 0),  # TYPE_TAG
    19: (0, 12),  # ENUM64
}


class Btf:
    """The type section of a BTF blob, indexed by type id and by (kind, name).

    BCC compiles against installed kernel headers that may be older than the running kernel, so
    any struct a probe reads by offset, and any enum it numbers items by, comes from here."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 24:
            raise UserError("kernel BTF is too short to be BTF")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
        if magic != BTF_MAGIC:
            raise UserError(f"not a little-endian BTF blob (magic {magic:#x})")
        type_off, type_len, str_off, str_len = struct.unpack_from("<4I", blob, 8)
        self._strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
        # id -> (kind, name_off, size_or_type, kind_flag, members): members are
        # (name_off, type, bit_off) of a struct/union, (name_off, type, 0) of a prototype's
        # parameters, (name_off, value, 0) of an enum.
        self._types: list[tuple[int, int, int, bool, list[tuple[int, int, int]]]] = [
            (0, 0, 0, False, [])
        ]
        self._by_name: dict[tuple[int, str], int] = {}
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        unpack = struct.Struct("<3I").unpack_from
        while pos < end:
            name_off, info, size_or_type = unpack(blob, pos)
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
            pos += 12
            if kind not in _TAIL:
                raise UserError(f"unknown BTF kind {kind} at type {len(self._types)}")
            members: list[tuple[int, int, int]] = []
            if kind in (KIND_STRUCT, KIND_UNION):
                members = [unpack(blob, pos + 12 * i) for i in range(vlen)]
            elif kind == KIND_FUNC_PROTO:
                members = [(*struct.unpack_from("<2I", blob, pos + 8 * i), 0) for i in range(vlen)]
            elif kind == KIND_ENUM:
                members = [(*struct.unpack_from("<Ii", blob, pos + 8 * i), 0) for i in range(vlen)]
            elif kind == KIND_ENUM64:
                for i in range(vlen):
                    off, lo, hi = unpack(blob, pos + 12 * i)
                    members.append((off, lo | (hi << 32), 0))
            tid = len(self._types)
            self._types.append((kind, name_off, size_or_type, kflag, members))
            if name_off:
                self._by_name.setdefault((kind, self.name(name_off)), tid)
            fixed, per_member = _TAIL[kind]
            pos += fixed + per_member * vlen

    def name(self, off: int) -> str:
        return self._strings[off : self._strings.index(b"\0", off)].decode()

    def find(self, kind: int, name: str) -> int | None:
        """The id of the first type of `kind` called `name`."""
        return self._by_name.get((kind, name))

    def function_id(self, name: str) -> int | None:
        """The type id of the kernel function `name` (what an fentry program attaches by)."""
        return self.find(KIND_FUNC, name)

    # -- enums ---------------------------------------------------------------------------------
    def enum(self, name: str) -> dict[int, str] | None:
        """value -> enumerator name of `enum name`; an alias such as NR_LRU_BASE =
        NR_INACTIVE_ANON keeps the item, not the marker."""
        tid = self.find(KIND_ENUM, name)
        tid = tid if tid is not None else self.find(KIND_ENUM64, name)
        if tid is None:
            return None
        values: dict[int, str] = {}
        for off, val, _ in self._types[tid][4]:
            if val not in values or values[val].endswith("_BASE"):
                values[val] = self.name(off)
        return values

    def enum_value(self, enum: str, item: str) -> int | None:
        values = self.enum(enum) or {}
        return next((v for v, n in values.items() if n == item), None)

    # -- structs and prototypes ----------------------------------------------------------------
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
def read(path: str = VMLINUX_BTF) -> Btf:
    """The kernel's BTF, parsed once per process; a one-line UserError when it cannot be read."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as exc:
        raise UserError(f"cannot read kernel BTF {path}: {exc.strerror}") from None
    return Btf(blob)
