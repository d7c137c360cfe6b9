"""Headroom: the memory a program in a given memory cgroup could really get now, with its parts.

The sizing signals frameworks read are either blind to page cache (MemFree, `sysinfo().freeram`,
`cudaMemGetInfo` on a unified-memory GPU) or count all of it as free (MemAvailable). Neither is
right for one program in one cgroup:

- Clean, unmapped page cache charged to the program's own cgroup can be dropped at once, by us
  (`uvmtrace record --reclaim-before-sizing` does), without touching anyone else: it counts.
- Mapped page cache can go only once it is unmapped, dirty (and under-writeback) pages only
  after a write-back: they do not count.
- Clean cache charged to *other* cgroups is the kernel's to reclaim, under pressure, possibly
  after the CUDA driver has already failed an allocation: it does not count either (it is
  shown, as the host's part of MemAvailable's optimism).
- The cgroup's limit minus its usage (for it and every ancestor) caps the whole.

    honest = min(MemFree + clean_unmapped(cgroup),
                 min over the cgroup and its ancestors of (limit - usage) + clean_unmapped(cgroup))

Page-cache parts from `memory.stat` (v1: the hierarchical `total_*` keys; v2: the plain ones):
    file LRU       = active_file + inactive_file            (page cache, shmem excluded)
    dirty          = dirty + writeback                       (v2: file_dirty + file_writeback)
    mapped         = mapped_file                             (v2: file_mapped)
    clean_unmapped = max(0, file LRU - dirty - mapped)
A page both dirty and mapped is subtracted twice: the figure errs low, never high. The host's
parts come from /proc/meminfo the same way (Active(file), Inactive(file), Dirty, Writeback,
Mapped).

Python API, for a launcher that would otherwise read MemFree:

    from uvmtrace.tracer.headroom import headroom
    kv_budget = 0.9 * headroom().honest_bytes
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from uvmtrace.host.cgroupfs import MemoryHierarchy, memory_cgroup_of, memory_hierarchy, read_int
from uvmtrace.host.cgroupfs import read_stat as read_memory_stat
from uvmtrace.recording.errors import UserError
from uvmtrace.tracer.containers import find_running

FORMULA = (
    "honest = min(MemFree, cgroup limit - usage) + clean unmapped page cache charged to the "
    "cgroup; clean unmapped = active_file + inactive_file - dirty - writeback - mapped"
)

# memory.stat keys per hierarchy version: (file LRU, dirty, writeback, mapped, shmem, anon).
_V1_KEYS = {
    "active_file": "total_active_file",
    "inactive_file": "total_inactive_file",
    "dirty": "total_dirty",
    "writeback": "total_writeback",
    "mapped": "total_mapped_file",
    "shmem": "total_shmem",
    "anon": "total_rss",
}
_V2_KEYS = {
    "active_file": "active_file",
    "inactive_file": "inactive_file",
    "dirty": "file_dirty",
    "writeback": "file_writeback",
    "mapped": "file_mapped",
    "shmem": "shmem",
    "anon": "anon",
}
_MEMINFO_KEYS = {
    "active_file": "Active(file)",
    "inactive_file": "Inactive(file)",
    "dirty": "Dirty",
    "writeback": "Writeback",
    "mapped": "Mapped",
    "shmem": "Shmem",
    "anon": "AnonPages",
}


@dataclass(frozen=True)
class PageCache:
    """Page cache split by what reclaim can do with it, in bytes."""

    total: int  # file LRU: active_file + inactive_file (shmem is on the anon LRU: not here)
    clean_unmapped: int  # reclaimable now
    mapped: int  # reclaimable only once unmapped
    dirty: int  # dirty + under write-back: reclaimable only after a write-back
    shmem: int  # tmpfs, shared memory, CUDA pinned host memory: not reclaimable without swap
    anon: int  # never reclaimable without swap

    @classmethod
    def from_counters(
        cls, values: dict[str, int], keys: dict[str, str], unit: int = 1
    ) -> PageCache:
        def get(name: str) -> int:
            return values.get(keys[name], 0) * unit

        total = get("active_file") + get("inactive_file")
        dirty = get("dirty") + get("writeback")
        mapped = get("mapped")
        return cls(
            total=total,
            clean_unmapped=max(0, total - dirty - mapped),
            mapped=mapped,
            dirty=dirty,
            shmem=get("shmem"),
            anon=get("anon"),
        )


@dataclass(frozen=True)
class Headroom:
    """What a program in `cgroup` could really get now, and the parts it is made of (bytes)."""

    cgroup: str | None  # path inside the memory hierarchy ("/" for the root), None: no memcg
    cgroup_version: int | None
    mem_total: int
    mem_free: int  # MemFree = sysinfo().freeram = cudaMemGetInfo's free on GB10
    mem_available: int  # the kernel's estimate: counts every cgroup's clean cache as free
    host_cache: PageCache
    cgroup_cache: PageCache | None
    cgroup_usage: int | None
    cgroup_limit: int | None  # the tightest limit on the way to the root (None: unlimited)
    cgroup_limit_at: str | None  # which cgroup sets it
    cgroup_room: int | None  # min over the cgroup and its ancestors of (limit - usage)
    reclaimable: int  # clean unmapped cache charged to the cgroup (the host's without a memcg)
    honest_bytes: int
    formula: str = FORMULA
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def per_cpu_free(path: str = "/proc/zoneinfo") -> int | None:
    """Free pages held on the per-CPU page lists, in bytes (the `count:` of every zone's
    pagesets). MemFree (and sysinfo().freeram) leaves them out although any allocation can take
    them; since Linux 6.7 the lists grow with bursts of freeing, up to an eighth of a zone
    (docs/fix.md): a MemFree reading moves by hundreds of MiB with no one's memory changing."""
    try:
        with open(path) as f:
            counts = [line.split()[1] for line in f if line.lstrip().startswith("count:")]
    except (OSError, IndexError):
        return None
    return sum(int(c) for c in counts if c.isdigit()) * os.sysconf("SC_PAGE_SIZE")


def cgroup_cache(h: MemoryHierarchy, path: Path) -> PageCache:
    """The page cache charged to the cgroup at `path` (and its descendants), split."""
    keys = _V1_KEYS if h.version == 1 else _V2_KEYS
    return PageCache.from_counters(read_memory_stat(path / "memory.stat"), keys)


def _room(h: MemoryHierarchy, path: Path) -> tuple[int | None, int | None, str | None]:
    """(room, limit, where): the tightest limit - usage over `path` and its ancestors."""
    best: tuple[int | None, int | None, str | None] = (None, None, None)
    cur = path
    while True:
        limit = read_int(cur / h.limit_file)
        usage = read_int(cur / h.usage_file)
        if limit is not None and usage is not None:
            room = max(0, limit - usage)
            if best[0] is None or room < best[0]:
                best = (room, limit, h.relative(cur))
        if cur == h.mount or h.mount not in cur.parents:
            return best
        cur = cur.parent


def headroom(
    *,
    pid: int | None = None,
    cgroup: str | os.PathLike[str] | None = None,
    container: str | None = None,
) -> Headroom:
    """The headroom of the memory cgroup of `pid`, `container` (docker/podman name or id), or
    `cgroup` (a path inside the memory hierarchy, or under /sys/fs/cgroup); default: ours."""
    if sum(x is not None for x in (pid, cgroup, container)) > 1:
        raise UserError("give at most one of --pid, --container, --cgroup")
    h = memory_hierarchy()
    if container is not None:
        pid = find_running(container).pid
    path = _target(h, pid, cgroup)
    meminfo = read_meminfo()
    host = PageCache.from_counters(meminfo, _MEMINFO_KEYS)
    mem_free = meminfo.get("MemFree", 0)
    notes: list[str] = []
    if h is None or path is None:
        notes.append("no memory cgroup controller: host figures only")
        return Headroom(
            cgroup=None,
            cgroup_version=None,
            mem_total=meminfo.get("MemTotal", 0),
            mem_free=mem_free,
            mem_available=meminfo.get("MemAvailable", 0),
            host_cache=host,
            cgroup_cache=None,
            cgroup_usage=None,
            cgroup_limit=None,
            cgroup_limit_at=None,
            cgroup_room=None,
            reclaimable=host.clean_unmapped,
            honest_bytes=mem_free + host.clean_unmapped,
            notes=notes,
        )
    cache = cgroup_cache(h, path)
    room, limit, limit_at = _room(h, path)
    reclaimable = cache.clean_unmapped
    honest = min(mem_free, room) if room is not None else mem_free
    if room is None:
        notes.append("no memory limit on this cgroup or its ancestors")
    if meminfo.get("SwapTotal", 0):
        notes.append("swap is on: anonymous memory could be swapped, but is not counted")
    return Headroom(
        cgroup=h.relative(path),
        cgroup_version=h.version,
        mem_total=meminfo.get("MemTotal", 0),
        mem_free=mem_free,
        mem_available=meminfo.get("MemAvailable", 0),
        host_cache=host,
        cgroup_cache=cache,
        cgroup_usage=read_int(path / h.usage_file),
        cgroup_limit=limit,
        cgroup_limit_at=limit_at,
        cgroup_room=room,
        reclaimable=reclaimable,
        honest_bytes=honest + reclaimable,
        notes=notes,
    )


def _target(h: MemoryHierarchy | None, pid: int | None, cgroup: Any) -> Path | None:
    if h is None:
        if cgroup is not None:
            raise UserError("no memory cgroup controller on this host: --cgroup cannot be used")
        return None
    if cgroup is None:
        try:
            return memory_cgroup_of(h, pid if pid is not None else "self")
        except FileNotFoundError:
            raise UserError(f"no process {pid}") from None
        except OSError as exc:
            raise UserError(f"cannot read /proc/{pid}/cgroup: {exc.strerror}") from None
    path = h.lookup(cgroup)
    if path is None:
        raise UserError(f"not a memory cgroup: {cgroup} (looked at {h.path_of(cgroup)})")
    return path
