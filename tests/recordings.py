"""Recordings with known content, written through the real writer, for the analysis tests.

`Recorder` collects events at times in seconds; `native_run` and `docker_run` build the two sides
of the docs/design.md story with round numbers a test can check to the byte:

native (cgroup 11, /user.slice/bench.scope), pid 100 `trtllm`:
  anon +2 GiB at 1 s, page cache of /weights.bin +1 GiB at 2 s (filemap_add, same cgroup),
  anon -0.5 GiB at 4.5 s (so peak != end); cuMemGetInfo free 60 GiB at 3 s and a kernel
  sysinfo() of the same value; cuMemAlloc 54 GiB (= 0.9 x 60) at 3.1 s; an unrelated
  cuMemAlloc of 5.1234 GiB at 4 s; log line "KV cache 54 GiB".
docker (cgroup 22, container `trt`, /docker/3f2a...), same process, plus:
  page cache of /weights.bin +20 GiB more (21 in all, filemap_add 2.0-2.5 s), shmem 2 GiB
  (NR_SHMEM and, as the kernel counts it, NR_FILE_PAGES), kernel memory 1 GiB; free at the sizing
  query = 60 - 20 - 2 - 1 - 0.5 (untraced) = 36.5 GiB; KV = 0.9 x 36.5 GiB.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from uvmtrace.recording.schema import COLUMN_NAMES, make_batch
from uvmtrace.recording.writer import write_recording

GIB = 1 << 30
MIB = 1 << 20
S = 1_000_000_000
T0_NS = 5_000 * S  # recordings start at an arbitrary monotonic time

NATIVE_CGROUP = 11
DOCKER_CGROUP = 22
PID = 100
CONTAINER_ID = "3f2a9c0d11e7" + "ab" * 26


class Recorder:
    """Collects events (time in seconds since the recording's start) and writes a recording."""

    def __init__(self, **metadata: Any) -> None:
        self.rows: list[dict[str, Any]] = []
        self.metadata: dict[str, Any] = {
            "command": ["trtllm-bench", "throughput"],
            "host": "test-host",
            "kernel": "6.18.0",
            "cgroup_version": 1,
            "page_size": 4096,
            "lost": {},
            "gpu": {"unified_memory": True, "devices": []},
            **metadata,
        }

    def add(self, t_s: float, stream: str, event: str, **cols: Any) -> Recorder:
        self.rows.append(
            {"ts_ns": T0_NS + round(t_s * S), "stream": stream, "event": event, **cols}
        )
        return self

    # kernel stream
    def charge(
        self, t: float, cgroup: int, item: str, nbytes: int, pid: int = PID, comm: str = "trtllm"
    ) -> Recorder:
        return self.add(
            t,
            "kernel",
            "memcg_charge",
            cgroup_id=cgroup,
            item=item,
            bytes=nbytes,
            pid=pid,
            tid=pid,
            comm=comm,
            count=1,
        )

    def filemap(
        self, t: float, path: str, nbytes: int, cgroup: int | None, pid: int = PID
    ) -> Recorder:
        """Page-cache pages of `path`; the real tracepoint has no cgroup (pass None)."""
        event = "filemap_add" if nbytes >= 0 else "filemap_delete"
        return self.add(
            t, "kernel", event, path=path, bytes=abs(nbytes), cgroup_id=cgroup, pid=pid, count=1
        )

    def fault(self, t: float, count: int, pid: int = PID, kind: str = "anon") -> Recorder:
        return self.add(t, "kernel", "page_fault", pid=pid, tid=pid, item=kind, count=count)

    def mapping(self, t: float, pid: int, nbytes: int, addr: int = 1 << 40) -> Recorder:
        """An anonymous private mmap (MAP_PRIVATE | MAP_ANONYMOUS) of `nbytes`."""
        return self.add(
            t, "kernel", "mmap", pid=pid, tid=pid, bytes=nbytes, flags=0x22, result=addr
        )

    # cuda stream
    def query(
        self,
        t: float,
        event: str,
        free: int,
        total: int = 96 * GIB,
        pid: int = PID,
        stream: str = "cuda",
    ) -> Recorder:
        return self.add(
            t, stream, event, pid=pid, tid=pid, free_bytes=free, total_bytes=total, result=0
        )

    def alloc(self, t: float, event: str, nbytes: int, addr: int, pid: int = PID) -> Recorder:
        return self.add(t, "cuda", event, pid=pid, tid=pid, bytes=nbytes, addr=addr, result=0)

    # sample stream
    def meminfo(self, t: float, **items: int) -> Recorder:
        for item, value in items.items():
            self.add(t, "sample", "meminfo", item=item, bytes=value)
        return self

    def memory_stat(self, t: float, cgroup: int, **keys: int) -> Recorder:
        for key, value in keys.items():
            self.add(t, "sample", "memory.stat", cgroup_id=cgroup, item=key, bytes=value)
        return self

    def current_and_limit(self, t: float, cgroup: int, current: int, limit: int | None) -> Recorder:
        self.add(
            t,
            "sample",
            "memory.current",
            cgroup_id=cgroup,
            bytes=current,
            item="memory.usage_in_bytes",
        )
        return self.add(
            t, "sample", "memory.limit", cgroup_id=cgroup, bytes=limit, item="memory.limit_in_bytes"
        )

    def nvml(self, t: float, used: int, total: int = 80 * GIB) -> Recorder:
        return self.add(
            t, "sample", "nvml_memory", item="0", bytes=used, free_bytes=total - used,
            total_bytes=total,
        )  # fmt: skip

    # proc stream
    def launched(self, t: float, pid: int, command: str) -> Recorder:
        """The recorder's own row for the command it started (no comm: not from a probe)."""
        return self.add(t, "proc", "exec", pid=pid, text=command)

    def fork(self, t: float, child: int, parent: int, comm: str = "python") -> Recorder:
        return self.add(t, "proc", "fork", pid=child, tid=child, count=parent, comm=comm)

    def write(self, path: Path, rows: Iterable[dict[str, Any]] | None = None) -> Path:
        rows = list(self.rows if rows is None else rows)
        columns = {name: [r.get(name) for r in rows] for name in COLUMN_NAMES}
        columns = {k: v for k, v in columns.items() if any(x is not None for x in v)}
        batches = [make_batch(columns)] if rows else []
        return write_recording(path, batches, self.metadata)


def _story(rec: Recorder, cgroup: int, *, docker: bool) -> Recorder:
    extra_cache = 20 * GIB if docker else 0
    shmem = 2 * GIB if docker else 0
    kmem = 1 * GIB if docker else 0
    untraced = GIB // 2 if docker else 0
    free = 60 * GIB - extra_cache - shmem - kmem - untraced

    rec.add(0.0, "proc", "exec", pid=PID, tid=PID, text="/usr/bin/trtllm-bench", comm="trtllm")
    rec.meminfo(0.0, MemFree=80 * GIB, MemAvailable=90 * GIB, Cached=4 * GIB)
    rec.memory_stat(0.0, cgroup, cache=0, rss=0, shmem=0, mapped_file=0)
    rec.current_and_limit(0.0, cgroup, current=0, limit=48 * GIB)
    rec.charge(1.0, cgroup, "NR_ANON_MAPPED", 2 * GIB)
    rec.fault(1.0, 300)
    rec.charge(2.0, cgroup, "NR_FILE_PAGES", 1 * GIB)
    rec.filemap(2.0, "/weights.bin", 1 * GIB, cgroup)
    if docker:
        # the rest of the weights stays in the page cache, charged to the container
        for i in range(4):
            rec.charge(2.1 + 0.1 * i, cgroup, "NR_FILE_PAGES", 5 * GIB)
            rec.filemap(2.1 + 0.1 * i, "/weights.bin", 5 * GIB, cgroup)
        rec.charge(2.6, cgroup, "NR_SHMEM", shmem)
        rec.charge(2.6, cgroup, "NR_FILE_PAGES", shmem)
        rec.charge(2.7, cgroup, "MEMCG_KMEM", kmem)
        rec.charge(2.7, cgroup, "NR_SLAB_UNRECLAIMABLE_B", kmem)  # a view of MEMCG_KMEM
    rec.add(2.9, "cuda", "cuInit", pid=PID, tid=PID, result=0)
    rec.query(3.0, "cuMemGetInfo", free=free)
    rec.query(3.0, "sysinfo", free=free, stream="kernel")
    rec.meminfo(3.0, MemFree=free, MemAvailable=free + 21 * GIB if docker else free + GIB)
    rec.current_and_limit(3.0, cgroup, current=3 * GIB + extra_cache + shmem + kmem, limit=48 * GIB)
    rec.alloc(3.1, "cuMemAlloc_v2", int(0.9 * free), addr=0x7F00_0000_0000)
    rec.add(
        3.2,
        "log",
        "kv_cache",
        item="tensorrt_llm",
        bytes=int(0.9 * free),
        text=f"[TensorRT-LLM][INFO] Allocated {0.9 * free / GIB:.2f} GiB for KV cache",
    )
    rec.alloc(4.0, "cuMemAlloc_v2", int(5.1234 * GIB), addr=0x7F10_0000_0000)
    rec.charge(4.5, cgroup, "NR_ANON_MAPPED", -GIB // 2)
    rec.fault(4.5, 200)
    end_anon = 2 * GIB - GIB // 2
    rec.meminfo(5.0, MemFree=free - GIB, MemAvailable=free)
    rec.memory_stat(
        5.0,
        cgroup,
        cache=1 * GIB + extra_cache + shmem,
        rss=end_anon,
        shmem=shmem,
        mapped_file=0,
    )
    rec.current_and_limit(
        5.0, cgroup, current=end_anon + GIB + extra_cache + shmem + kmem, limit=48 * GIB
    )
    rec.add(5.0, "proc", "proc_faults", pid=PID, item="minflt", count=500, text="at exit")
    rec.add(5.0, "proc", "proc_faults", pid=PID, item="majflt", count=0, text="at exit")
    rec.add(5.0, "proc", "exit", pid=PID, result=0)
    return rec


def native_recorder(**metadata: Any) -> Recorder:
    rec = Recorder(
        cgroups={str(NATIVE_CGROUP): {"path": "/user.slice/bench.scope", "hierarchy": "memory"}},
        target_cgroups=[NATIVE_CGROUP],
        **metadata,
    )
    return _story(rec, NATIVE_CGROUP, docker=False)


def docker_recorder(**metadata: Any) -> Recorder:
    rec = Recorder(
        command=["docker", "run", "--rm", "trt", "trtllm-bench", "throughput"],
        cgroups={
            str(DOCKER_CGROUP): {
                "path": f"/docker/{CONTAINER_ID}",
                "hierarchy": "memory",
                "container_id": CONTAINER_ID,
                "container_name": "trt",
            }
        },
        target_cgroups=[DOCKER_CGROUP],
        **metadata,
    )
    return _story(rec, DOCKER_CGROUP, docker=True)


def native_run(path: Path) -> Path:
    return native_recorder().write(path)


def docker_run(path: Path) -> Path:
    return docker_recorder().write(path)
