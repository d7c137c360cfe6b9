"""The shim loads into anything or stays out cleanly: musl programs, minimal glibc images and
static programs run under `record` exactly as they would without it (output, exit code), and the
recording says which ran without the shim and why."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import IN_CI
from tests.dockerimg import image_of_files
from tests.test_record import events, uvmtrace
from uvmtrace.recording.reader import open_recording
from uvmtrace.shim.target import RootFs

HELLO = Path(__file__).parent / "programs" / "hello.c"
EXPECTED_OUT = "out 0\nout 1\nout 2\n"
EXPECTED_ERR = "err 0\nerr 1\nerr 2\n"


@pytest.fixture(scope="session")
def hello_musl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("musl-gcc") is None:
        if IN_CI:
            pytest.fail("CI=true but musl-gcc is missing (apt-get install musl-tools)")
        pytest.skip("needs musl-gcc (apt-get install musl-tools)")
    out = tmp_path_factory.mktemp("musl") / "hello-musl"
    subprocess.run(["musl-gcc", "-O1", "-o", out, HELLO], check=True)
    return out


@pytest.fixture(scope="session")
def hello_glibc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("glibc") / "hello-glibc"
    subprocess.run(["cc", "-O1", "-o", out, HELLO], check=True)
    return out


def own_libraries(program: Path) -> dict[str, str]:
    """The files the dynamic loader maps for `program` (ldd), by their path."""
    listing = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    paths = re.findall(r"(/\S+)\s+\(0x", listing)
    return {p: p for p in paths}


def uvmtrace_cgroups() -> set[str]:
    """The `uvmtrace-<pid>` memory cgroups beside ours (where record makes the command's)."""
    from uvmtrace.host.cgroupfs import memory_cgroup_of, memory_hierarchy

    h = memory_hierarchy()
    if h is None:
        return set()
    parents = {memory_cgroup_of(h), memory_cgroup_of(h).parent}
    return {str(p) for d in parents for p in d.glob("uvmtrace-*")}


def stray_cgroups(before: set[str]) -> set[str]:
    return uvmtrace_cgroups() - before


def test_the_shim_needs_nothing_but_libc(shim: Path) -> None:
    dynamic = subprocess.run(["readelf", "-d", shim], capture_output=True, text=True).stdout
    assert re.findall(r"NEEDED.*\[(.+)\]", dynamic) == ["libc.so.6"]


def test_a_musl_program_and_its_interpreter_are_recognised(hello_musl: Path) -> None:
    interp = RootFs([Path("/")]).program_interpreter(str(hello_musl), "")
    assert interp is not None and "ld-musl" in interp
    assert RootFs([Path("/")]).program_interpreter("busybox", "/bin:/usr/bin") in ("", None)


@pytest.mark.usefixtures("need_bpf")
def test_a_musl_program_runs_unchanged_and_without_the_shim(
    hello_musl: Path, tmp_path: Path
) -> None:
    before = uvmtrace_cgroups()
    out = tmp_path / "m.parquet"
    r = uvmtrace("record", "-q", "-o", str(out), "--", str(hello_musl), "7")
    assert (r.returncode, r.stdout) == (7, EXPECTED_OUT)
    assert r.stderr == EXPECTED_ERR
    not_traced = open_recording(out).metadata["not_traced"]
    assert any("musl" in n["why"] and str(hello_musl) in n["what"] for n in not_traced)
    assert stray_cgroups(before) == set()


@pytest.mark.usefixtures("need_bpf")
def test_a_musl_child_of_a_glibc_shell_gets_a_shim_that_bows_out(
    hello_musl: Path, tmp_path: Path
) -> None:
    # The shell is glibc, so LD_PRELOAD is set; the musl child inherits it and the shim, loaded
    # there, steps aside and leaves a note.
    out = tmp_path / "s.parquet"
    r = uvmtrace("record", "-q", "-o", str(out), "--", "sh", "-c", f"{hello_musl} 5")
    assert (r.returncode, r.stdout, r.stderr) == (5, EXPECTED_OUT, EXPECTED_ERR)
    not_traced = open_recording(out).metadata["not_traced"]
    assert any(
        n["why"] == "not a glibc program (musl?)" and str(hello_musl) in n["what"]
        for n in not_traced
    ), not_traced


@pytest.mark.usefixtures("need_bpf", "need_docker")
def test_a_musl_image_runs_under_record_with_its_exit_code_and_output(
    hello_musl: Path, tmp_path: Path
) -> None:
    loader = RootFs([Path("/")]).program_interpreter(str(hello_musl), "")
    tag = f"uvmtrace-test-musl-{uuid.uuid4().hex[:8]}"
    image_of_files(tag, {"/hello": str(hello_musl), loader: loader}, ["/hello"])
    try:
        before = uvmtrace_cgroups()
        out = tmp_path / "dm.parquet"
        r = uvmtrace(
            "record", "-q", "-o", str(out), "--", "docker", "run", "--rm", tag, "/hello", "9"
        )
        assert (r.returncode, r.stdout, r.stderr) == (9, EXPECTED_OUT, EXPECTED_ERR)
        meta = open_recording(out).metadata
        assert any("musl" in n["why"] and "/hello" in n["what"] for n in meta["not_traced"])
        assert stray_cgroups(before) == set()
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


@pytest.mark.usefixtures("need_bpf", "need_docker")
def test_a_minimal_glibc_image_runs_under_record_with_the_shim(
    hello_glibc: Path, tmp_path: Path
) -> None:
    # Only the program's own libraries: no libdl.so.2, no libpthread.so.0.
    files = {"/hello": str(hello_glibc), **own_libraries(hello_glibc)}
    assert not any("libdl" in f or "libpthread" in f for f in files)
    tag = f"uvmtrace-test-glibc-{uuid.uuid4().hex[:8]}"
    image_of_files(tag, files, ["/hello"])
    try:
        before = uvmtrace_cgroups()
        out = tmp_path / "dg.parquet"
        r = uvmtrace(
            "record", "-q", "-o", str(out), "--", "docker", "run", "--rm", tag, "/hello", "3"
        )
        assert (r.returncode, r.stdout, r.stderr) == (3, EXPECTED_OUT, EXPECTED_ERR)
        # The shim was there: the program's sysinfo() call is in the cuda stream.
        df = events(out)
        sysinfo = df.filter((pl.col("stream") == "cuda") & (pl.col("event") == "sysinfo"))
        assert sysinfo.height == 1 and sysinfo["result"][0] == 0
        assert stray_cgroups(before) == set()
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
