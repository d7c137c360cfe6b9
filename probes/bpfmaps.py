"""The recorder's side of the BPF maps: lookups, updates, deletes and batch reads by map fd,
straight through bpf(2) with ctypes.

The recorder holds only fds (the programs were compiled and attached by a short-lived child,
probes/loader_child.py), so it never loads libbcc and the LLVM/clang it links: that would cost
it ~150 MB of RSS for the whole recording (docs/performance.md). Key and value sizes come from
the kernel (BPF_OBJ_GET_INFO_BY_FD), not from a compiler's view of the C structs. The attr
layouts are the uapi `union bpf_attr` members (include/uapi/linux/bpf.h), which only grow.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
from collections.abc import Iterator

# __NR_bpf differs per architecture; these are the ones uvmtrace targets.
_NR_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280}

MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
MAP_GET_NEXT_KEY = 4
OBJ_GET_INFO_BY_FD = 15
MAP_LOOKUP_BATCH = 24
MAP_DELETE_BATCH = 27

# map types whose values come one per possible CPU
_PERCPU_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH


class _ElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # or next_key
        ("flags", ctypes.c_uint64),
    ]


class _BatchAttr(ctypes.Structure):
    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _InfoAttr(ctypes.Structure):
    _fields_ = [
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    ]


class _MapInfo(ctypes.Structure):  # struct bpf_map_info, the fields used here
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def bpf(cmd: int, attr: ctypes.Structure) -> int:
    """One bpf(2) call; raises OSError with the kernel's errno."""
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"bpf() syscall number unknown for {platform.machine()}")
    res = _libc.syscall(
        ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr))
    )
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, describe_errno(err))
    return int(res)


# The kernel's ENOTSUPP (524) is not in Python's errno table.
ENOTSUPP = 524


def describe_errno(err: int) -> str:
    """`EPERM (Operation not permitted)`: the name tells "not allowed" from "not built in"."""
    if err == ENOTSUPP:
        return "ENOTSUPP (operation not supported by this kernel)"
    name = errno.errorcode.get(err, str(err))
    return f"{name} ({os.strerror(err)})"


def obj_info(fd: int, buf: ctypes.Array | ctypes.Structure) -> int:
    """Fill `buf` with the kernel's info struct of a BPF object; returns the length it wrote."""
    attr = _InfoAttr(fd, ctypes.sizeof(buf), ctypes.addressof(buf))
    bpf(OBJ_GET_INFO_BY_FD, attr)
    return int(attr.info_len)


def possible_cpus() -> int:
    """Per-CPU map values come in one slot per possible CPU (not only the online ones)."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


class BpfMap:
    """One map by fd. Keys and values are bytes (or any buffer) of the map's sizes."""

    def __init__(self, fd: int) -> None:
        info = _MapInfo()
        obj_info(fd, info)
        self.fd = fd
        self.type = int(info.type)
        self.key_size = int(info.key_size)
        self.value_size = int(info.value_size)
        self.max_entries = int(info.max_entries)
        # what one lookup returns: per-CPU maps give a value, 8-byte aligned, per possible CPU
        self.ncpus = possible_cpus() if self.type in _PERCPU_TYPES else 1
        self.value_bytes = (
            ((self.value_size + 7) & ~7) * self.ncpus if self.ncpus > 1 else self.value_size
        )

    def _elem(self, cmd: int, key: bytes | int, value: int = 0, flags: int = 0) -> None:
        kbuf = key if isinstance(key, int) else ctypes.create_string_buffer(bytes(key), len(key))
        kaddr = kbuf if isinstance(kbuf, int) else ctypes.addressof(kbuf)
        bpf(cmd, _ElemAttr(self.fd, 0, kaddr, value, flags))

    def lookup(self, key: bytes) -> bytes | None:
        out = ctypes.create_string_buffer(self.value_bytes)
        try:
            self._elem(MAP_LOOKUP_ELEM, key, ctypes.addressof(out))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return out.raw

    def lookup_into(self, key: bytes, address: int) -> None:
        """Look `key` up into memory the caller owns (value_bytes long)."""
        self._elem(MAP_LOOKUP_ELEM, key, address)

    def update(self, key: bytes, value: bytes) -> None:
        vbuf = ctypes.create_string_buffer(bytes(value), len(value))
        self._elem(MAP_UPDATE_ELEM, key, ctypes.addressof(vbuf))

    def delete(self, key: bytes | int) -> bool:
        """Remove `key` (bytes, or the address of a key); False if it was not there."""
        try:
            self._elem(MAP_DELETE_ELEM, key)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def __iter__(self) -> Iterator[bytes]:
        """The keys, as the kernel walks them."""
        key = ctypes.create_string_buffer(self.key_size)
        nxt = ctypes.create_string_buffer(self.key_size)
        first = True
        while True:
            attr = _ElemAttr(self.fd, 0, 0 if first else ctypes.addressof(key), 0, 0)
            attr.value = ctypes.addressof(nxt)
            try:
                bpf(MAP_GET_NEXT_KEY, attr)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise
            yield nxt.raw
            ctypes.memmove(key, nxt, self.key_size)
            first = False

    def items(self) -> list[tuple[bytes, bytes]]:
        out = []
        for key in list(self):
            value = self.lookup(key)
            if value is not None:  # deleted meanwhile
                out.append((key, value))
        return out

    def lookup_batch(
        self, in_batch: int | None, out_batch: int, keys: int, values: int, count: int
    ) -> tuple[int, bool]:
        """BPF_MAP_LOOKUP_BATCH into caller-owned buffers (addresses); returns (entries read,
        whether the map is exhausted)."""
        attr = _BatchAttr(in_batch or 0, out_batch, keys, values, count, self.fd, 0, 0)
        try:
            bpf(MAP_LOOKUP_BATCH, attr)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return int(attr.count), True
            raise OSError(exc.errno, f"BPF_MAP_LOOKUP_BATCH: {exc.strerror}") from None
        return int(attr.count), attr.count == 0

    def delete_batch(self, keys: int, count: int) -> bool:
        """BPF_MAP_DELETE_BATCH of `count` keys at address `keys`; False where the kernel has no
        batch delete (before 5.6)."""
        attr = _BatchAttr(0, 0, keys, 0, count, self.fd, 0, 0)
        try:
            bpf(MAP_DELETE_BATCH, attr)
        except OSError:
            return False
        return True
