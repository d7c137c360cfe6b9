"""`uvmtrace headroom`: only clean, unmapped page cache charged to the cgroup counts as reclaimable.

The real case: a process in a fresh memory cgroup writes a file and syncs it (clean cache),
writes another and does not (dirty), maps a third and touches every page (mapped), and fills
anonymous memory. The figures are checked against the bytes it wrote, the kernel's own
memory.stat and /proc/meminfo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from uvmtrace.host import cgroupfs
from uvmtrace.tracer.headroom import _V2_KEYS, PageCache, headroom, read_meminfo

MIB = 1 << 20
CLEAN, DIRTY, MAPPED, ANON = 96 * MIB, 64 * MIB, 32 * MIB, 128 * MIB
LIMIT = 1 << 30
SLACK = 24 * MIB  # the interpreter's own start-up charges, rounding to pages

FILLER = textwrap.dedent(
    """
    import mmap, os, sys
    d, clean, dirty, mapped, anon = sys.argv[1], *map(int, sys.argv[2:6])
    sys.stdin.readline()  # moved into the cgroup: now every page is charged to it
    block = os.urandom(1 << 20)
    def write(name, size, sync):
        fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for _ in range(size >> 20):
            os.write(fd, block)
        if sync:
            os.fsync(fd)
        os.close(fd)
    write("clean.bin", clean, True)
    write("mapped.bin", mapped, True)
    write("dirty.bin", dirty, False)
    f = open(os.path.join(d, "mapped.bin"), "rb")
    m = mmap.mmap(f.fileno(), mapped, prot=mmap.PROT_READ)
    touched = sum(m[i] for i in range(0, mapped, mmap.PAGESIZE))
    heap = bytearray(anon)
    for i in range(0, anon, mmap.PAGESIZE):
        heap[i] = 1
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


@dataclass
class Filled:
    cgroup: Path
    rel: str
    pid: int


@pytest.fixture
def filled_cgroup(need_root: None, tmp_path: Path) -> Iterator[Filled]:
    h = cgroupfs.memory_hierarchy()
    if h is None:
        pytest.skip("no memory cgroup controller")
    cg = cgroupfs.make_run_cgroup(h, f"uvmtrace-headroom-test-{os.getpid()}")
    proc = subprocess.Popen(
        [sys.executable, "-c", FILLER, str(tmp_path), *map(str, (CLEAN, DIRTY, MAPPED, ANON))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        (cg / "cgroup.procs").write_text(str(proc.pid))
        (cg / h.limit_file).write_text(str(LIMIT))
        assert proc.stdin and proc.stdout
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ready"
        yield Filled(cg, "/" + str(cg.relative_to(h.mount)), proc.pid)
    finally:
        proc.kill()
        proc.wait()
        for name in ("clean.bin", "dirty.bin", "mapped.bin"):
            p = tmp_path / name
            if p.exists():  # drop our cache before the cgroup goes, so rmdir succeeds at once
                fd = os.open(p, os.O_RDONLY)
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
        cgroupfs.remove_cgroup(cg)


def test_only_the_synced_file_counts_as_reclaimable(filled_cgroup: Filled) -> None:
    room = headroom(pid=filled_cgroup.pid)
    cache = room.cgroup_cache
    assert room.cgroup == filled_cgroup.rel
    assert cache is not None
    # Dirty pages the flusher wrote back meanwhile are clean now: the only way the clean part
    # may exceed the synced file (beyond start-up noise).
    written_back = max(0, DIRTY - cache.dirty)
    assert CLEAN - SLACK / 4 <= cache.clean_unmapped <= CLEAN + written_back + SLACK
    assert room.reclaimable == cache.clean_unmapped
    assert cache.mapped >= MAPPED
    assert cache.dirty <= DIRTY + SLACK
    assert cache.anon >= ANON  # filled, never counted
    assert cache.total >= CLEAN - SLACK / 4 + MAPPED + cache.dirty  # the shortfall above


def test_figures_agree_with_the_kernels_memory_stat(filled_cgroup: Filled) -> None:
    room = headroom(cgroup=filled_cgroup.rel)
    stat = cgroupfs.read_stat(filled_cgroup.cgroup / "memory.stat")
    v1 = "total_rss" in stat
    lru = sum(stat["total_" * v1 + k] for k in ("active_file", "inactive_file"))
    assert room.cgroup_cache is not None
    assert abs(room.cgroup_cache.total - lru) <= 4 * MIB
    mapped = stat["total_mapped_file" if v1 else "file_mapped"]
    assert abs(room.cgroup_cache.mapped - mapped) <= 4 * MIB


def test_the_limit_caps_the_honest_figure(filled_cgroup: Filled) -> None:
    room = headroom(pid=filled_cgroup.pid)
    assert room.cgroup_limit == LIMIT
    assert room.cgroup_limit_at == filled_cgroup.rel
    assert room.cgroup_usage is not None and room.cgroup_room is not None
    assert abs(room.cgroup_room - (LIMIT - room.cgroup_usage)) <= 8 * MIB
    expected = min(room.mem_free, room.cgroup_room) + room.reclaimable
    assert room.honest_bytes == expected
    assert room.honest_bytes <= LIMIT - (ANON + MAPPED)  # what is held cannot be had again


def test_host_figures_are_proc_meminfos(filled_cgroup: Filled) -> None:
    room = headroom(pid=filled_cgroup.pid)
    now = read_meminfo()
    assert room.mem_total == now["MemTotal"]
    assert abs(room.mem_free - now["MemFree"]) <= 256 * MIB  # a shared machine moves a little
    assert abs(room.mem_available - now["MemAvailable"]) <= 256 * MIB
    assert room.host_cache.total >= room.cgroup_cache.total  # type: ignore[union-attr]


def test_cli_json_names_every_part(filled_cgroup: Filled) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "uvmtrace.cli", "headroom", "--pid", str(filled_cgroup.pid),
         "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    doc = json.loads(r.stdout)
    assert doc["cgroup"] == filled_cgroup.rel
    assert {"clean_unmapped", "mapped", "dirty"} <= set(doc["cgroup_cache"])
    assert doc["formula"].startswith("honest = ")
    text = subprocess.run(
        [sys.executable, "-m", "uvmtrace.cli", "headroom", "--cgroup", filled_cgroup.rel],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "clean, unmapped (reclaimable now)" in text and "honest headroom" in text


def test_v2_memory_stat_is_split_the_same_way() -> None:
    stat = {"active_file": 300, "inactive_file": 700, "file_dirty": 100, "file_writeback": 50,
            "file_mapped": 200, "shmem": 40, "anon": 1000}  # fmt: skip
    cache = PageCache.from_counters(stat, _V2_KEYS)
    assert (cache.total, cache.dirty, cache.mapped, cache.clean_unmapped) == (1000, 150, 200, 650)
    assert (cache.shmem, cache.anon) == (40, 1000)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pid", "999999999"], "no process 999999999"),
        (["--cgroup", "/no/such/cgroup"], "not a memory cgroup"),
        (["--pid", "1", "--cgroup", "/"], "at most one of"),
    ],
)
def test_bad_targets_are_one_line_errors(args: list[str], message: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "uvmtrace.cli", "headroom", *args],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode != 0
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
