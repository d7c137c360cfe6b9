"""Scope and losses: a container found through cgroup_mkdir, and a tiny ring buffer that
reports its drops instead of hiding them."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from tests.dockerimg import busybox_image

MiB = 1 << 20


def frame(batches: list[pa.RecordBatch]) -> pl.DataFrame:
    return pl.from_arrow(pa.Table.from_batches(batches))


def test_a_containers_charges_land_on_its_cgroup_found_via_mkdir(
    need_bpf: None, need_docker: None
) -> None:
    from uvmtrace.probes.kernel_tracer import KernelTracer

    image = busybox_image()
    tracer = KernelTracer(probes={"memcg", "proc"})
    tracer.watch_new_cgroups(True)
    tracer.start()
    batches: list[pa.RecordBatch] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cidfile = Path(tmp) / "cid"
            docker = subprocess.Popen(
                [
                    "docker",
                    "run",
                    "--rm",
                    "--memory=256m",
                    "--cidfile",
                    str(cidfile),
                    image,
                    "sh",
                    "-c",
                    "head -c 33554432 /dev/zero > /dev/shm/blob && sleep 0.3",
                ],
            )
            while docker.poll() is None:
                batches += tracer.poll(100)
            assert docker.returncode == 0
            container_id = cidfile.read_text().strip()
    finally:
        batches += tracer.stop()
    events = frame(batches)
    mkdir = events.filter(
        (pl.col("event") == "cgroup_mkdir")
        & (pl.col("item") == "memory")
        & pl.col("path").cast(pl.String).str.ends_with(container_id)
    )
    assert mkdir.height == 1
    container_cgroup = mkdir["cgroup_id"][0]
    shmem = events.filter(
        (pl.col("event") == "memcg_charge")
        & (pl.col("cgroup_id") == container_cgroup)
        & (pl.col("item") == "NR_SHMEM")
    ).sort("ts_ns")
    peak = shmem["bytes"].cum_sum().max()
    assert abs(peak - 32 * MiB) <= 0.05 * 32 * MiB
    cgroups = tracer.metadata()["cgroups"]
    assert cgroups[str(container_cgroup)]["path"].endswith(container_id)


TOUCH = (
    "import mmap, sys; sys.stdin.readline(); n = int(sys.argv[1]); "
    "m = mmap.mmap(-1, n * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)\n"
    "for off in range(0, n * 4096, 4096): m[off] = 1\n"
    "print('done', flush=True); sys.stdin.readline()"
)


def faults_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7]) + int(fields[9])


def test_a_tiny_ring_buffer_counts_what_it_drops(need_bpf: None) -> None:
    from uvmtrace.probes.kernel_tracer import KernelTracer

    tracer = KernelTracer(raw=True, ringbuf_pages=1, probes={"page_fault"})
    tracer.start()
    child = subprocess.Popen(
        [sys.executable, "-c", TOUCH, "20000"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        tracer.add_pid(child.pid)
        before = faults_of(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"  # no poll meanwhile: the ring overflows
        faults = faults_of(child.pid) - before
        events = frame(tracer.stop())
    finally:
        child.kill()
        child.wait()
    lost = tracer.metadata()["lost"]["page_fault"]
    seen = events.filter((pl.col("event") == "page_fault") & (pl.col("pid") == child.pid)).height
    assert lost > 0
    # every fault is either delivered or counted as lost
    assert abs(seen + lost - faults) <= 0.01 * faults


def test_unknown_probe_names_are_a_one_line_error() -> None:
    from uvmtrace.probes.kernel_tracer import KernelTracer
    from uvmtrace.recording.errors import UserError

    with pytest.raises(UserError, match="unknown probe"):
        KernelTracer(probes={"memcg", "nosuch"})
    with pytest.raises(UserError, match="power of two"):
        KernelTracer(ringbuf_pages=3)


QUERY = (
    "import mmap, os, sys; sys.stdin.readline(); os.sysconf('SC_AVPHYS_PAGES'); "
    "open('/proc/meminfo').read(); f = open(sys.argv[1], 'rb'); "
    "m = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ); f.close(); "
    "print('done', flush=True); sys.stdin.readline()"
)


def test_memory_queries_and_file_mappings_are_seen(need_bpf: None, tmp_path: Path) -> None:
    from uvmtrace.probes.kernel_tracer import KernelTracer

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 8192)
    tracer = KernelTracer(probes={"queries", "mappings"})
    tracer.start()
    child = subprocess.Popen(
        [sys.executable, "-c", QUERY, str(weights)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        tracer.add_pid(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        events = frame(tracer.poll(0) + tracer.stop())
    finally:
        child.kill()
        child.wait()
    mine = events.filter(pl.col("pid") == child.pid)
    sysinfo = mine.filter(pl.col("event") == "sysinfo")
    assert sysinfo.height >= 1 and sysinfo["free_bytes"][0] > 0
    assert "/proc/meminfo" in mine.filter(pl.col("event") == "openat")["path"].cast(pl.String)
    mapped = mine.filter((pl.col("event") == "mmap") & (pl.col("bytes") == 4096))
    assert str(weights) in mapped["path"].cast(pl.String).to_list()
    assert mapped.filter(pl.col("path") == str(weights))["item"].cast(pl.String)[0] == "r--s"
