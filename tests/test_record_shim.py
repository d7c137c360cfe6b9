"""The CUDA stream in a recording: a program calling the (stand-in) driver, natively and inside
a container, under `uvmtrace record`."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import polars as pl
import pytest

from tests.dockerimg import busybox_image
from tests.test_record import uvmtrace
from tests.test_record_docker import GLIBC_PARTS
from uvmtrace.recording.reader import open_recording

GiB = 1 << 30


def cuda_rows(out: Path) -> pl.DataFrame:
    df = open_recording(out).scan().filter(pl.col("stream") == "cuda").collect()
    assert df.height > 0, "no cuda stream in the recording"
    return df


@pytest.mark.usefixtures("need_bpf")
def test_a_native_program_calling_the_driver_appears_in_the_cuda_stream(
    driver: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "n.parquet"
    env_cmd = ["env", f"LD_LIBRARY_PATH={driver}", str(driver / "driver_user"), "direct"]
    r = uvmtrace("record", "-q", "-o", str(out), "--", *env_cmd)
    assert r.returncode == 0, r.stderr
    df = cuda_rows(out)
    events = set(df.get_column("event").to_list())
    assert {"cuMemGetInfo", "cuMemAlloc", "cuMemFree"} <= events
    info = df.filter(pl.col("event") == "cuMemGetInfo").row(0, named=True)
    assert info["free_bytes"] > 0 and info["total_bytes"] >= info["free_bytes"]
    # CUDA calls carry the pid of the process the probes traced: `env` exec'd driver_user.
    exec_pids = (
        open_recording(out).scan().filter(pl.col("event") == "exec").collect().get_column("pid")
    )
    assert set(df.get_column("pid").to_list()) <= set(exec_pids.to_list())


def driver_in_container(
    driver: Path, *run_options: str, mode: str = "direct", shell: str | None = None
) -> list[str]:
    """`docker run` of the stand-in driver's test program in the busybox image (the host's glibc
    mounted in), with `run_options` (e.g. --rm, -d) after `run`; with `shell`, that busybox sh
    script instead (the program is /drv/driver_user)."""
    name = f"uvmtrace-shim-{uuid.uuid4().hex[:8]}"
    argv = ["docker", "run", *run_options, "--name", name, "--network", "none",
            "-v", f"{driver}:/drv:ro", "-e", "LD_LIBRARY_PATH=/drv"]  # fmt: skip
    for lib in ("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6", *GLIBC_PARTS):
        if os.path.exists(lib):
            argv += ["-v", f"{os.path.realpath(lib)}:{lib}:ro"]
    program = ["/bin/sh", "-c", shell] if shell else ["/drv/driver_user", mode]
    return [*argv, busybox_image(), *program]


@pytest.mark.usefixtures("need_bpf", "need_docker")
def test_inside_a_container_the_shim_is_injected_and_pids_are_the_hosts(
    driver: Path,
    tmp_path: Path,
) -> None:
    argv = driver_in_container(driver, "--rm")
    out = tmp_path / "c.parquet"
    r = uvmtrace("record", "-q", "-o", str(out), "--", *argv)
    assert r.returncode == 0, r.stderr
    rec = open_recording(out)
    assert "LD_PRELOAD=/.uvmtrace/libuvmshim.so" in rec.metadata["command_rewritten"]
    assert rec.metadata["container"]["name"] == argv[argv.index("--name") + 1]
    df = cuda_rows(out)
    assert {"cuMemGetInfo", "cuMemAlloc"} <= set(df.get_column("event").to_list())
    # Inside its pid namespace the program is pid 1; the recording maps it to the host pid.
    assert df.get_column("ns_pid").unique().to_list() == [1]
    host_pids = df.get_column("pid").unique().to_list()
    assert host_pids != [1] and None not in host_pids
