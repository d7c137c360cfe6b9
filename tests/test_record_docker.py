"""`uvmtrace record -- docker run ...`: the container is found, named and charged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest

from tests.dockerimg import busybox_image
from tests.test_record import (
    BUCKET_NS,
    UVMTRACE,
    WORKLOAD,
    MiB,
    charged_between_marks,
    cold_file,
    uvmtrace,
)
from uvmtrace.analysis.report import build_report
from uvmtrace.example.image import python_mounts
from uvmtrace.recording.reader import open_recording

GLIBC_PARTS = (
    "/lib/x86_64-linux-gnu/libdl.so.2",
    "/lib/x86_64-linux-gnu/libpthread.so.0",
    "/lib/aarch64-linux-gnu/libdl.so.2",
    "/lib/aarch64-linux-gnu/libpthread.so.0",
)
pytestmark = pytest.mark.usefixtures("need_bpf", "need_docker")


def docker_python(name: str, *args: str, mounts: list[str] = ()) -> list[str]:
    """`docker run` of the host's Python in the busybox test image, limited to 1 GiB."""
    argv = ["docker", "run", "--rm", "--name", name, "--network", "none", "--memory=1g"]
    for host, inside in python_mounts():
        argv += ["-v", f"{host}:{inside}:ro"]
    for lib in GLIBC_PARTS:  # what pre-2.34-style programs link (the stand-in driver)
        if os.path.exists(lib):
            argv += ["-v", f"{os.path.realpath(lib)}:{lib}:ro"]
    for m in mounts:
        argv += ["-v", m]
    return [*argv, busybox_image(), os.path.realpath(sys.executable), "-I", *args]


def definite_losses(meta: dict) -> dict[str, int]:
    """Events a probe dropped (full map or ring). `<probe>_nested` counts are the kernel's
    host-wide recursion misses (an IRQ's update while the probe ran on that CPU), whichever
    cgroup they were for: reported, but not all ours."""
    return {k: v for k, v in meta["lost"].items() if v and not k.endswith("_nested")}


def container_workload_pid(df: pl.DataFrame, cgid: int) -> int:
    marks = df.filter((pl.col("event") == "openat") & (pl.col("path") == "/proc/meminfo"))
    chargers = df.filter((pl.col("event") == "memcg_charge") & (pl.col("cgroup_id") == cgid))
    twice = marks.group_by("pid").len().filter(pl.col("len") == 2).get_column("pid")
    (pid,) = set(twice.to_list()) & set(chargers.get_column("pid").to_list())
    return pid


def test_a_container_is_found_named_and_charged_its_bytes(tmp_path: Path) -> None:
    cold_file(tmp_path / "data.bin", 100 * MiB)
    name = f"uvmtrace-test-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "d.parquet"
    argv = docker_python(name, "-c", WORKLOAD, "/data/data.bin", mounts=[f"{tmp_path}:/data:ro"])
    r = uvmtrace("record", "-q", "-o", str(out), "--", *argv)
    assert r.returncode == 0, r.stderr
    rec = open_recording(out)
    container = rec.metadata["container"]
    assert container["name"] == name
    assert len(container["id"]) == 64
    cgid = container["cgroup_id"]
    assert container["id"] in container["cgroup_path"]
    entry = rec.metadata["cgroups"][str(cgid)]
    assert entry["container_name"] == name and entry["container_id"] == container["id"]
    assert cgid in rec.metadata["target_cgroups"]
    assert "--cidfile" in rec.metadata["command_rewritten"]

    assert definite_losses(rec.metadata) == {}
    df = rec.scan().collect()
    # The python process inside the container: its host pid is the one that read /proc/meminfo
    # twice and charged the container's cgroup.
    pid = container_workload_pid(df, cgid)
    assert rec.metadata["bucket_ns"] == BUCKET_NS
    anon = charged_between_marks(df, cgid, "NR_ANON_MAPPED", pid)
    file = charged_between_marks(df, cgid, "NR_FILE_PAGES", pid)
    assert anon == pytest.approx(200 * MiB, rel=0.05)
    assert file == pytest.approx(100 * MiB, rel=0.05)
    # Samples of the container's own cgroup, with its 1 GiB limit.
    limit = df.filter((pl.col("event") == "memory.limit") & (pl.col("cgroup_id") == cgid))
    assert limit.get_column("bytes").drop_nulls().to_list()[-1] == 1 << 30
    # --rm: the container's cgroup is gone before the recording ends. It is reconciled over its
    # life (first to last sample taken while it existed), and its charges are right.
    reconciliation = build_report(out)["reconciliation"]
    mine = [r for r in reconciliation["memcg"] if r["cgroup_id"] == cgid and r["in_total"]]
    assert mine, reconciliation["memcg"]
    moved = sum(abs(r["stat_delta"]) for r in mine)
    assert sum(abs(r["difference"]) for r in mine) <= 0.05 * moved, mine
    assert reconciliation["summary"]["memcg_agreement"] >= 0.9, reconciliation["summary"]["line"]


# Charges 16 MiB and reads /proc/meminfo every 50 ms: what any process on a busy host does.
STRANGER = """
import time
keep = []
for _ in range(200):
    keep = [bytearray(16 << 20)]
    with open("/proc/meminfo") as f:
        f.read()
    time.sleep(0.05)
"""


def _run_cgroup_of(recorder_pid: int) -> Path | None:
    hits = list(Path("/sys/fs/cgroup/memory").rglob(f"uvmtrace-{recorder_pid}"))
    return hits[0] if hits else None


def test_a_cgroup_created_meanwhile_by_a_stranger_is_forgotten_once_the_container_is_known(
    tmp_path: Path,
) -> None:
    if not Path("/sys/fs/cgroup/memory/cgroup.procs").exists():
        pytest.skip("needs the cgroup v1 memory hierarchy (docker with cgroupfs)")
    name = f"uvmtrace-test-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "s.parquet"
    argv = docker_python(name, "-c", "import time; time.sleep(1.5)")
    recorder = subprocess.Popen(
        [*UVMTRACE, "record", "-q", "-o", str(out), "--", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stranger_cg = Path(f"/sys/fs/cgroup/memory/stranger-{uuid.uuid4().hex[:8]}")
    stranger = None
    try:
        # Probes are attached (and watching) before the recorder makes its run cgroup.
        deadline = time.monotonic() + 60
        while _run_cgroup_of(recorder.pid) is None and recorder.poll() is None:
            assert time.monotonic() < deadline, "the recorder never made its run cgroup"
            time.sleep(0.02)
        stranger_cg.mkdir()
        stranger = subprocess.Popen(
            [
                "sh",
                "-c",
                f'echo $$ > {stranger_cg}/cgroup.procs && exec "$0" -c "$1"',
                sys.executable,
                STRANGER,
            ]  # fmt: skip
        )
        _, err = recorder.communicate(timeout=120)
        assert recorder.returncode == 0, err
        stranger_id = stranger_cg.stat().st_ino
    finally:
        if stranger is not None:
            stranger.kill()
            stranger.wait()
        if recorder.poll() is None:
            recorder.kill()
        if stranger_cg.exists():
            stranger_cg.rmdir()

    rec = open_recording(out)
    assert definite_losses(rec.metadata) == {}
    cgid = rec.metadata["container"]["cgroup_id"]
    assert stranger_id not in rec.metadata["target_cgroups"]
    entry = rec.metadata["cgroups"][str(stranger_id)]  # seen when it was created...
    assert entry.get("forgotten") is True and not entry.get("target")  # ...and then dropped
    df = rec.scan().collect()
    # The container is known from its first sample; a sum already running ends with its bucket.
    known = df.filter((pl.col("stream") == "sample") & (pl.col("cgroup_id") == cgid))
    after = known.get_column("ts_ns").min() // BUCKET_NS * BUCKET_NS + BUCKET_NS
    late = df.filter((pl.col("ts_ns") >= after) & (pl.col("stream") != "sample"))
    # Not adopted: nothing of the stranger's own (its execs, mmaps, queries, its cgroup's
    # charges). What stays are charges *to our cgroups* that happened in its context (a kernel
    # object of ours it freed): kept for the cgroup, whoever the task.
    targets = set(rec.metadata["target_cgroups"])
    kept_for_us = pl.col("cgroup_id").is_in(list(targets)).fill_null(False)
    own = late.filter((pl.col("pid") == stranger.pid) & ~kept_for_us)
    assert own.height == 0, own.select("ts_ns", "event", "item", "cgroup_id", "bytes").to_dicts()
    # The stranger charged 16 MiB per 50 ms. What is left of its cgroup are the few pages our
    # own processes touched for it (an LRU batch drained on our CPU), kept by pid.
    into_it = late.filter(pl.col("cgroup_id") == stranger_id).get_column("bytes").abs().sum()
    assert into_it < 1 << 20
