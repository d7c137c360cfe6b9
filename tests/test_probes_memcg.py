"""A child in a fresh memory cgroup reads a file into the page cache, touches anonymous pages and
fills a tmpfs file; the probes' charges must match those sizes and the kernel's own memory.stat
deltas, and its fault count must match /proc/PID/stat."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from conftest import _need, has_bpf

MiB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
FILE_BYTES = 64 * MiB
ANON_PAGES = 16384  # 64 MiB
SHMEM_BYTES = 32 * MiB
MEMCG_ROOT = Path("/sys/fs/cgroup/memory")

# The child prepares everything it needs (buffer, unfaulted mapping) before it joins the cgroup,
# so what is charged there afterwards is the workload alone.
CHILD = r"""
import mmap, os, sys
path, shm_path, pages = sys.argv[1], sys.argv[2], int(sys.argv[3])
buf = bytearray(1 << 20)
anon = mmap.mmap(-1, pages * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
print("ready", flush=True)
sys.stdin.readline()
with open(path, "rb", buffering=0) as f:
    while f.readinto(buf):
        pass
for off in range(0, pages * mmap.PAGESIZE, mmap.PAGESIZE):
    anon[off] = 1
fd = os.open(shm_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
for _ in range(int(sys.argv[4]) // len(buf)):
    os.write(fd, buf)
os.close(fd)
print("done", flush=True)
sys.stdin.readline()
"""


def memory_stat(cgroup: Path) -> dict[str, int]:
    lines = (cgroup / "memory.stat").read_text().splitlines()
    return {k: int(v) for k, v in (line.split() for line in lines)}


def faults_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7]) + int(fields[9])  # minflt, majflt


def fresh_uncached_file(directory: Path, size: int) -> Path:
    path = directory / "pagecache.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        chunk = os.urandom(MiB)
        for _ in range(size // MiB):
            os.write(fd, chunk)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages: really dropped
    finally:
        os.close(fd)
    return path


@dataclass
class Run:
    frame: pl.DataFrame
    cgroup_id: int
    pid: int
    stat_delta: dict[str, int]
    fault_delta: int
    metadata: dict


@pytest.fixture(scope="module")
def workload_in_cgroup() -> Iterator[Run]:
    _need(has_bpf(), "needs root, BCC and tracefs", ci_must_have=True)
    if not (MEMCG_ROOT / "memory.stat").exists():
        pytest.skip("needs the cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
    from uvmtrace.probes.kernel_tracer import KernelTracer

    cgroup = MEMCG_ROOT / f"uvmtrace-test-{secrets.token_hex(4)}"
    cgroup.mkdir(mode=0o700)
    work = Path(tempfile.mkdtemp(prefix="uvmtrace-probes-", dir="/var/tmp"))
    shm = work / "tmpfs"
    shm.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "uvmtest", shm], check=True)
    child = None
    tracer = KernelTracer(probes={"memcg", "page_fault", "filemap", "proc"})
    try:
        data = fresh_uncached_file(work, FILE_BYTES)
        tracer.start()
        cgid = cgroup.stat().st_ino  # the memcg tracepoints' id is this inode
        tracer.add_cgroup(cgid)
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(data),
                str(shm / "f"),
                str(ANON_PAGES),
                str(SHMEM_BYTES),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "ready"
        tracer.add_pid(child.pid)
        (cgroup / "cgroup.procs").write_text(str(child.pid))
        before, faults_before = memory_stat(cgroup), faults_of(child.pid)
        batches: list[pa.RecordBatch] = []
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        after, faults_after = memory_stat(cgroup), faults_of(child.pid)
        time.sleep(0.05)
        batches += tracer.poll(0)
        batches += tracer.stop()
        frame = pl.from_arrow(pa.Table.from_batches(batches))
        yield Run(
            frame=frame,
            cgroup_id=cgid,
            pid=child.pid,
            stat_delta={k: after[k] - before.get(k, 0) for k in after},
            fault_delta=faults_after - faults_before,
            metadata=tracer.metadata(),
        )
    finally:
        tracer.stop()
        if child is not None:
            child.kill()
            child.wait()
        subprocess.run(["umount", shm], check=False)
        for p in (work / "pagecache.bin", shm):
            if p.is_dir():
                p.rmdir()
            elif p.exists():
                p.unlink()
        work.rmdir()
        for _ in range(50):  # the cgroup can be removed once its last task is reaped
            try:
                cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def charged(run: Run, item: str) -> int:
    f = run.frame.filter(
        (pl.col("event") == "memcg_charge")
        & (pl.col("cgroup_id") == run.cgroup_id)
        & (pl.col("item") == item)
    )
    return int(f["bytes"].sum() or 0)


def within(value: int, expected: int, rel: float) -> bool:
    return abs(value - expected) <= rel * expected


def test_page_cache_anon_and_shmem_are_charged_to_the_cgroup(workload_in_cgroup: Run) -> None:
    run = workload_in_cgroup
    file_only = charged(run, "NR_FILE_PAGES") - charged(run, "NR_SHMEM")
    assert within(file_only, FILE_BYTES, 0.05), file_only
    assert within(charged(run, "NR_ANON_MAPPED"), ANON_PAGES * PAGE, 0.05)
    assert within(charged(run, "NR_SHMEM"), SHMEM_BYTES, 0.05)


def test_integrated_charges_agree_with_the_kernels_memory_stat(workload_in_cgroup: Run) -> None:
    run = workload_in_cgroup
    # cgroup v1 memory.stat key -> the stat item it reports (mm/memcontrol-v1.c)
    pairs = {"cache": "NR_FILE_PAGES", "rss": "NR_ANON_MAPPED", "shmem": "NR_SHMEM"}
    for key, item in pairs.items():
        kernel, traced = run.stat_delta[key], charged(run, item)
        assert kernel > 16 * MiB
        assert within(traced, kernel, 0.05), (key, kernel, traced)


def test_fault_count_matches_the_kernels_minflt_plus_majflt(workload_in_cgroup: Run) -> None:
    run = workload_in_cgroup
    faults = run.frame.filter((pl.col("event") == "page_fault") & (pl.col("pid") == run.pid))
    assert run.fault_delta >= ANON_PAGES
    assert within(int(faults["count"].sum()), run.fault_delta, 0.01)


def test_page_cache_pages_are_summed_per_file(workload_in_cgroup: Run) -> None:
    run = workload_in_cgroup
    added = (
        run.frame.filter((pl.col("event") == "filemap_add") & (pl.col("pid") == run.pid))
        .group_by("inode")
        .agg(pl.col("bytes").sum())
    )
    assert added["bytes"].max() >= FILE_BYTES * 0.95


def test_no_event_is_lost_at_this_rate(workload_in_cgroup: Run) -> None:
    # `<probe>_nested`: program runs the kernel skipped host-wide (an IRQ's update while the
    # probe ran on that CPU), whichever cgroup they were for: reported, not all ours
    lost = workload_in_cgroup.metadata["lost"]
    assert {k: v for k, v in lost.items() if v and not k.endswith("_nested")} == {}
    assert workload_in_cgroup.metadata["probes"]["memcg"]["attached"]
    assert workload_in_cgroup.metadata["memcg_variant"] == "tracepoint"
