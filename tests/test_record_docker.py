"""`uvmtrace record -- docker run ...`: the container is found, named and charged."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import polars as pl
import pytest

from tests.dockerimg import busybox_image
from tests.test_record import (
    BUCKET_NS,
    WORKLOAD,
    MiB,
    charged_between_marks,
    cold_file,
    uvmtrace,
)
from uvmtrace.analysis.reader import open_recording
from uvmtrace.tracer.demo_image import python_mounts

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
    for lib in GLIBC_PARTS:  # what the injected shim links to besides libc (any distro has them)
        if os.path.exists(lib):
            argv += ["-v", f"{os.path.realpath(lib)}:{lib}:ro"]
    for m in mounts:
        argv += ["-v", m]
    return [*argv, busybox_image(), os.path.realpath(sys.executable), "-I", *args]


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

    df = rec.scan().collect()
    # The python process inside the container: its host pid is the one that read /proc/meminfo.
    pid = (
        df.filter((pl.col("event") == "openat") & (pl.col("path") == "/proc/meminfo"))
        .group_by("pid")
        .len()
        .filter(pl.col("len") == 2)
        .get_column("pid")[0]
    )
    assert rec.metadata["bucket_ns"] == BUCKET_NS
    anon = charged_between_marks(df, cgid, "NR_ANON_MAPPED", pid)
    file = charged_between_marks(df, cgid, "NR_FILE_PAGES", pid)
    assert anon == pytest.approx(200 * MiB, rel=0.05)
    assert file == pytest.approx(100 * MiB, rel=0.05)
    # Samples of the container's own cgroup, with its 1 GiB limit.
    limit = df.filter((pl.col("event") == "memory.limit") & (pl.col("cgroup_id") == cgid))
    assert limit.get_column("bytes").drop_nulls().to_list()[-1] == 1 << 30
