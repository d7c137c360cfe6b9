"""Reclaim before sizing: drop the clean page cache the workload brought in, then let it ask.

When the traced program makes a sizing query, the shim waits (shim/reclaim_requests.py) while
this module frees the **clean** page cache charged to the program's cgroup:

- with the probes' page-cache events: the files the workload added to the page cache, each with
  posix_fadvise(POSIX_FADV_DONTNEED). A file is skipped when it has dirty or under-write-back
  pages (fadvise would start their write-back), or when more of it is cached than the workload
  brought in (the rest is charged to another cgroup). fadvise never drops mapped pages.
- without them (`shim run`, no BPF), on cgroup v2: the cgroup's `memory.reclaim`, asked for the
  clean, unmapped cache `memory.stat` shows (tracer/headroom.py), with swappiness=0 so no
  anonymous memory moves. On cgroup v1 there is nothing safe to do: the answer says so.

Each reclaim becomes one `proc`/`reclaim` row: bytes freed, time taken, files, method.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from uvmtrace.host import cgroupfs
from uvmtrace.recording.schema import make_batch
from uvmtrace.tracer.headroom import cgroup_cache, read_meminfo
from uvmtrace.tracer.snapshot import cachestat_pages

if TYPE_CHECKING:
    from uvmtrace.probes.kernel_tracer import KernelTracer
    from uvmtrace.shim.reclaim_requests import Request
PAGE = os.sysconf("SC_PAGE_SIZE")
SHARED_SLACK = 4 << 20  # cached beyond what the workload added, still taken as its own


def cachestat(fd: int) -> tuple[int, int] | None:
    """(cached bytes, dirty + under-write-back bytes) of the whole file; None before Linux 6.5."""
    cs = cachestat_pages(fd)
    if cs is None:
        return None
    return cs.nr_cache * PAGE, (cs.nr_dirty + cs.nr_writeback) * PAGE


@dataclass
class CachedFile:
    """A file the workload added to the page cache, as the probes saw it."""

    dev: int
    inode: int
    path: str | None
    pid: int
    added: int = 0
    deleted: int = 0

    @property
    def net(self) -> int:
        return self.added - self.deleted


class PageCacheLedger:
    """Per file, the page cache the traced workload added and removed (filemap rows)."""

    def __init__(self) -> None:
        self.files: dict[tuple[int, int], CachedFile] = {}

    def observe(self, batch: pa.RecordBatch) -> None:
        _add(batch, self.files)

    def with_pending(self, pending: list[pa.RecordBatch]) -> list[CachedFile]:
        """The ledger plus rows not drained yet (a snapshot; the ledger itself is unchanged)."""
        snapshot = {key: replace(f) for key, f in self.files.items()}
        for batch in pending:
            _add(batch, snapshot)
        return sorted(snapshot.values(), key=lambda f: -f.net)


def _add(batch: pa.RecordBatch, files: dict[tuple[int, int], CachedFile]) -> None:
    if "event" not in batch.schema.names or batch.num_rows == 0:
        return
    cols = batch.select(["event", "dev", "inode", "path", "pid", "bytes"]).to_pydict()
    for event, dev, ino, path, pid, nbytes in zip(*cols.values(), strict=True):
        if event not in ("filemap_add", "filemap_delete") or dev is None or ino is None:
            continue
        f = files.setdefault((dev, ino), CachedFile(dev, ino, path, pid or 0))
        f.path = f.path or path
        if event == "filemap_add":
            f.added += nbytes or 0
        else:
            f.deleted += nbytes or 0


@dataclass
class Outcome:
    method: str  # fadvise | memory.reclaim | none
    freed: int = 0
    seconds: float = 0.0
    files: list[dict[str, Any]] = field(default_factory=list)
    why: str | None = None


def _open_verified(f: CachedFile, host_path: str | None, pid: int) -> int | None:
    """An fd of the file the event names: a regular file with its inode, opened without
    following a symlink at the end (a container's own symlinks never lead us elsewhere)."""
    candidates = [p for p in (host_path, f.path) if p]
    if f.path:
        candidates.append(f"/proc/{pid}/root{f.path}")
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        st = os.fstat(fd)
        via_root = path.startswith("/proc/")  # an overlay shows its own st_dev, the real inode
        if stat.S_ISREG(st.st_mode) and st.st_ino == f.inode and (via_root or st.st_dev == f.dev):
            return fd
        os.close(fd)
    return None


def drop_files(
    files: list[CachedFile], tracer: KernelTracer | None, pid: int, exclude: tuple[str, ...] = ()
) -> Outcome:
    """fadvise(DONTNEED) each file the workload cached, clean ones only, measured by cachestat.
    Files under `exclude` (uvmtrace's own: the shim library, its record files) are left alone."""
    out = Outcome("fadvise")
    for f in files:
        if f.net <= 0 or (f.path and f.path.startswith(exclude)):
            continue
        entry: dict[str, Any] = {"path": f.path, "dev": f.dev, "inode": f.inode, "added": f.net}
        out.files.append(entry)
        host = tracer.host_path(f.path) if tracer is not None and f.path else None
        fd = _open_verified(f, host, pid)
        if fd is None:
            entry["skipped"] = "cannot open the file the event names"
            continue
        try:
            before = cachestat(fd)
            if before is None:
                entry["skipped"] = "no cachestat (Linux < 6.5): dirty pages cannot be ruled out"
                continue
            cached, dirty = before
            if dirty:
                entry["skipped"] = f"{dirty} bytes dirty or under write-back: not touched"
                continue
            if cached > f.net + SHARED_SLACK:
                entry["skipped"] = f"{cached} bytes cached, {f.net} by the workload: shared"
                continue
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            after = cachestat(fd)
            freed = max(0, cached - (after[0] if after else cached))
            entry["freed"] = freed
            out.freed += freed
        finally:
            os.close(fd)
    if not out.files:
        out.why = "the workload added no page cache"
    return out


def reclaim_cgroup_v2(pid: int) -> Outcome:
    """memory.reclaim of `pid`'s cgroup, for its clean unmapped cache, no anonymous memory."""
    h = cgroupfs.memory_hierarchy()
    if h is None or h.version != 2:
        return Outcome("none", why="cgroup v1 without page-cache events: nothing safe to drop")
    try:
        cg = cgroupfs.memory_cgroup_of(h, pid)
    except OSError as exc:
        return Outcome("none", why=f"cgroup of pid {pid}: {exc.strerror}")
    want = cgroup_cache(h, cg).clean_unmapped
    out = Outcome("memory.reclaim", files=[{"cgroup": str(cg), "asked": want}])
    if want <= 0:
        out.why = "no clean, unmapped page cache in the cgroup"
        return out
    before = cgroupfs.read_int(cg / h.usage_file) or 0
    for arg in (f"{want} swappiness=0", f"{want}"):
        if arg == f"{want}" and read_meminfo().get("SwapTotal", 0):
            out.why = "memory.reclaim has no swappiness= here and swap is on: not asked"
            break
        try:
            (cg / "memory.reclaim").write_text(arg)
            break
        except OSError as exc:
            if exc.errno == 11:  # EAGAIN: less than asked could be reclaimed
                break
            if exc.errno != 22:  # EINVAL: an older kernel without swappiness=
                out.why = f"memory.reclaim: {exc.strerror}"
                break
    out.freed = max(0, before - (cgroupfs.read_int(cg / h.usage_file) or 0))
    return out


class Reclaimer:
    """Answers the shim's reclaim requests; keeps the page-cache ledger and the rows to write."""

    def __init__(
        self, requests: Any, tracer: KernelTracer | None, exclude: tuple[Path, ...] = ()
    ) -> None:
        self.requests = requests
        self.tracer = tracer
        self.exclude = tuple(str(p).rstrip("/") + "/" for p in exclude)
        self.ledger = PageCacheLedger()
        self.total_freed = 0
        self.total_seconds = 0.0
        self.count = 0

    def observe(self, batch: pa.RecordBatch) -> None:
        self.ledger.observe(batch)

    def serve(self) -> list[pa.RecordBatch]:
        return [batch for r in self.requests.pending() for batch in self.handle(r)]

    def handle(self, req: Request) -> list[pa.RecordBatch]:
        t0 = time.monotonic_ns()
        try:
            if self.tracer is not None:
                pending = self.tracer.page_cache_pending()
                files = self.ledger.with_pending(pending)
                out = drop_files(files, self.tracer, req.host_pid, self.exclude)
            else:
                out = reclaim_cgroup_v2(req.host_pid)
        except Exception as exc:  # never keep the program waiting because of us
            out = Outcome("none", why=f"error: {exc}")
        dur = time.monotonic_ns() - t0
        req.answer(f"ok {out.freed}")
        self.count += 1
        self.total_freed += out.freed
        self.total_seconds += dur / 1e9
        mem_free = None
        with contextlib.suppress(OSError):
            mem_free = read_meminfo().get("MemFree")
        detail = {"seconds": dur / 1e9, "files": out.files, **({"why": out.why} if out.why else {})}
        row = make_batch(
            {
                "ts_ns": t0,
                "stream": "proc",
                "event": "reclaim",
                "pid": req.host_pid,
                "tid": req.tid,
                "ns_pid": req.ns_pid,
                "pid_ns": req.pid_ns,
                "item": out.method,
                "caller": req.function,
                "bytes": out.freed,
                "dur_ns": dur,
                "count": sum(1 for f in out.files if f.get("freed")),
                "free_bytes": mem_free,
                "text": json.dumps(detail),
            }
        )
        freed = [f for f in out.files if f.get("freed")]
        if not freed:
            return [row]
        # Per file, the pages dropped: the probes saw the evictions in our context, not the
        # workload's, so these rows keep the page cache per file right in the analysis.
        return [
            row,
            make_batch(
                {
                    "ts_ns": t0 + dur,
                    "stream": "proc",
                    "event": "reclaim_file",
                    "pid": req.host_pid,
                    "path": [f["path"] for f in freed],
                    "dev": [f["dev"] for f in freed],
                    "inode": [f["inode"] for f in freed],
                    "bytes": [f["freed"] for f in freed],
                }
            ),
        ]

    def metadata(self, queries: tuple[str, ...]) -> dict[str, Any]:
        from uvmtrace.shim.reclaim_requests import DEFAULT_TIMEOUT_MS

        return {
            "queries": list(queries),
            "timeout_ms": DEFAULT_TIMEOUT_MS,
            "requests": self.count,
            "reclaimed_bytes": self.total_freed,
            "seconds": round(self.total_seconds, 6),
        }
