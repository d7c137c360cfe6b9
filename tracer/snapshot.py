"""The starting state of processes uvmtrace attaches to: what they held before the probes saw them.

Rows of stream `snapshot`, taken once, right after the probes attach (docs/recording.md):
- `smaps_rollup`: per process, every field of /proc/PID/smaps_rollup (Rss, Pss_Anon, Pss_File,
  Pss_Shmem, Anonymous, Swap, ...) in bytes;
- `file_cache`: per file the processes map or hold open, how much of it is in the page cache:
  cachestat(2) where the kernel has it (Linux >= 6.5; it counts a file's resident pages without
  mapping it), else mincore(2) over a read-only shared mapping of the file.
The cgroups' `memory.stat` at attach is the first `sample` row, taken right after these.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from uvmtrace.host.procfs import open_fds
from uvmtrace.recording.schema import make_batch
from uvmtrace.tracer.samplers import monotonic_ns

# cachestat(2) is syscall 451 in the table every architecture shares since Linux 6.5 (alpha
# aside, which uvmtrace does not run on); older kernels answer ENOSYS.
SYS_CACHESTAT = 451
MAX_FILES = 4096  # per snapshot; more are counted in `files_skipped`, not read
PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long,
]  # fmt: skip
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


class _CachestatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Cachestat(ctypes.Structure):
    _fields_ = [
        ("nr_cache", ctypes.c_uint64),
        ("nr_dirty", ctypes.c_uint64),
        ("nr_writeback", ctypes.c_uint64),
        ("nr_evicted", ctypes.c_uint64),
        ("nr_recently_evicted", ctypes.c_uint64),
    ]


@dataclass(frozen=True)
class Residency:
    pages: int  # resident in the page cache
    dirty: int | None  # dirty pages (cachestat only)
    method: str  # "cachestat" | "mincore"


def residency(fd: int, size: int) -> Residency | None:
    """How much of the open file `fd` (of `size` bytes) is in the page cache."""
    return cachestat(fd) or mincore(fd, size)


def cachestat_pages(fd: int) -> _Cachestat | None:
    """cachestat(2)'s page counts over the whole file; None where the kernel lacks it (ENOSYS).
    The one wrapper of the syscall: the snapshot and the reclaim before sizing both use it."""
    rng, cs = _CachestatRange(0, 0), _Cachestat()  # len 0: to the end of the file
    if _libc.syscall(SYS_CACHESTAT, fd, ctypes.byref(rng), ctypes.byref(cs), 0) != 0:
        return None
    return cs


def cachestat(fd: int) -> Residency | None:
    """cachestat(2) over the whole file as a Residency; None where the kernel lacks it."""
    cs = cachestat_pages(fd)
    if cs is None:
        return None
    return Residency(int(cs.nr_cache), int(cs.nr_dirty), "cachestat")


def mincore(fd: int, size: int) -> Residency | None:
    """mincore(2) over a read-only shared mapping of the file (mapping faults nothing in)."""
    if size <= 0:
        return Residency(0, None, "mincore")
    addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        return None
    try:
        vec = np.zeros((size + PAGE - 1) // PAGE, np.uint8)
        if _libc.mincore(addr, size, vec.ctypes.data) != 0:
            return None
        return Residency(int(np.count_nonzero(vec & 1)), None, "mincore")
    finally:
        _libc.munmap(addr, size)


def smaps_rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in bytes ({} for a process that is gone or a kernel thread)."""
    out: dict[str, int] = {}
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return out
    for line in lines[1:]:  # the first line is the [rollup] pseudo-mapping
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


@dataclass
class _File:
    pid: int
    opener: str  # a /proc path that opens the file as the process sees it
    path: str  # the name the process knows it by
    how: set[str]


def _mapped_files(pid: int) -> Iterable[tuple[tuple[int, int], str, str]]:
    """((dev, inode), opener, path) of the file-backed mappings of `pid`."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or parts[4] == "0" or not parts[5].startswith("/"):
            continue  # anonymous, [heap], [stack], [vdso]
        major, minor = (int(x, 16) for x in parts[3].split(":"))
        key = (os.makedev(major, minor), int(parts[4]))
        yield key, f"/proc/{pid}/map_files/{parts[0]}", parts[5]


def _open_files(pid: int) -> Iterable[tuple[tuple[int, int], str, str]]:
    """((dev, inode), opener, path) of the regular files `pid` holds open."""
    for st, opener, path in open_fds(pid):
        if stat.S_ISREG(st.st_mode):
            yield (st.st_dev, st.st_ino), opener, path


def take(pids: Iterable[int]) -> tuple[pa.RecordBatch, dict[str, int]]:
    """The snapshot of these processes: one batch, and counts for the metadata."""
    ts = monotonic_ns()
    rows: dict[str, list] = {
        k: [] for k in ("event", "pid", "comm", "item", "bytes", "total_bytes", "path", "count")
    }
    rows |= {"dev": [], "inode": [], "text": []}

    def add(**values: object) -> None:
        for key, column in rows.items():
            column.append(values.get(key))

    files: dict[tuple[int, int], _File] = {}
    counts = {"processes": 0, "files": 0, "files_skipped": 0, "files_unreadable": 0}
    for pid in sorted(set(pids)):
        rollup = smaps_rollup(pid)
        name = comm(pid)
        if rollup:
            counts["processes"] += 1
        for key, value in rollup.items():
            add(event="smaps_rollup", pid=pid, comm=name, item=key, bytes=value)
        for how, found in (("mapped", _mapped_files(pid)), ("open", _open_files(pid))):
            for key, opener, path in found:
                if key in files:
                    files[key].how.add(how)
                elif len(files) < MAX_FILES:
                    files[key] = _File(pid, opener, path, {how})
                else:
                    counts["files_skipped"] += 1
    for (dev, ino), f in files.items():
        got = _file_residency(f.opener)
        if got is None:
            counts["files_unreadable"] += 1
            continue
        size, res = got
        counts["files"] += 1
        add(
            event="file_cache",
            pid=f.pid,
            comm=comm(f.pid),
            item=",".join(sorted(f.how)),
            bytes=res.pages * PAGE,
            total_bytes=size,
            path=f.path,
            count=res.dirty,
            dev=dev,
            inode=ino,
            text=res.method,
        )
    n = len(rows["event"])
    batch = make_batch({"ts_ns": [ts] * n, "stream": "snapshot", **rows}, num_rows=n)
    return batch, counts


def _file_residency(opener: str) -> tuple[int, Residency] | None:
    try:
        fd = os.open(opener, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # gone meanwhile, or not openable (a device file held by the process)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        with contextlib.suppress(OSError):
            res = residency(fd, st.st_size)
            return (st.st_size, res) if res is not None else None
        return None
    finally:
        os.close(fd)
