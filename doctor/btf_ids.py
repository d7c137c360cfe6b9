"""Find a function's type id in the kernel's BTF (/sys/kernel/btf/vmlinux).

An fentry program must name the BTF id of the function it attaches to, so testing fentry honestly
needs one. The format (Documentation/bpf/btf.rst): a header, then a type section of variable-length
records (12-byte `btf_type` + a kind-specific tail), then a string section.
"""

from __future__ import annotations

import struct
from pathlib import Path

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")

BTF_MAGIC = 0xEB9F
BTF_KIND_FUNC = 12

# Bytes that follow the 12-byte btf_type, per kind: a fixed part and a per-member part (x vlen).
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


class BTFError(Exception):
    pass


def find_function_id(name: str, path: Path = VMLINUX_BTF) -> int | None:
    """The BTF type id of the FUNC called `name`, or None if the kernel has no such function."""
    data = path.read_bytes()
    if len(data) < 24:
        raise BTFError(f"{path} is too short to be BTF")
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
    if magic != BTF_MAGIC:
        raise BTFError(f"{path} is not BTF (magic {magic:#x})")
    type_off, type_len, str_off, _str_len = struct.unpack_from("<IIII", data, 8)
    strings = hdr_len + str_off
    # Find the name in the string section first: the type scan then compares integers only.
    needle = b"\0" + name.encode() + b"\0"
    hit = data.find(needle, strings)
    if hit < 0:
        return None
    name_off = hit + 1 - strings

    pos, end, type_id = hdr_len + type_off, hdr_len + type_off + type_len, 0
    unpack = struct.Struct("<III").unpack_from
    while pos < end:
        type_id += 1  # ids start at 1; 0 is `void`
        t_name, info, _size = unpack(data, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if kind == BTF_KIND_FUNC and t_name == name_off:
            return type_id
        try:
            fixed, per_member = _TAIL[kind]
        except KeyError:
            raise BTFError(f"unknown BTF kind {kind} at type {type_id}") from None
        pos += 12 + fixed + per_member * vlen
    return None
