"""`uvmtrace record --pid / --container / --cgroup`: recording what is already running.

The workloads fill anonymous memory and page cache, stop at a plateau (where the test reads
their smaps_rollup, the truth the snapshot must match), wait to be told to go on, fill more,
then exit by themselves: the recording must end cleanly when they do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import polars as pl
import pytest

from tests.test_record import UVMTRACE, MiB, cold_file, uvmtrace
from tests.test_record_docker import definite_losses, docker_python
from uvmtrace.analysis.report import build_report
from uvmtrace.host import cgroupfs
from uvmtrace.recording.reader import open_recording
from uvmtrace.tracer.snapshot import smaps_rollup

# argv: first file, second file, how to wait ("stdin" or a path whose existence means go).
WORKLOAD = textwrap.dedent(
    """
    import mmap, os, sys, time
    def fill(anon_mib, path):
        m = mmap.mmap(-1, anon_mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        for off in range(0, anon_mib << 20, 4096):
            m[off] = 1
        with open(path, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass
        return m
    keep = [fill(64, sys.argv[1])]
    held = open(sys.argv[1], "rb")
    mapped = mmap.mmap(held.fileno(), 0, prot=mmap.PROT_READ)
    print("ready", flush=True)
    if sys.argv[3] == "stdin":
        sys.stdin.readline()
    else:
        while not os.path.exists(sys.argv[3]):
            time.sleep(0.05)
    keep.append(fill(200, sys.argv[2]))
    time.sleep(1.0)  # the samples see the peak before the exit
    os._exit(0)  # no interpreter clean-up: the memory goes at once, in the exit
    """
)
pytestmark = pytest.mark.usefixtures("need_bpf")


def start_attached(out: Path, *targets: str) -> subprocess.Popen:
    """`record` of running targets; returns once it says it has attached."""
    proc = subprocess.Popen(
        [*UVMTRACE, "record", "-o", str(out), *targets],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "attached to" in line, line + proc.stderr.read()
    return proc


def snapshot_rows(df: pl.DataFrame, event: str, pid: int | None = None) -> pl.DataFrame:
    rows = df.filter((pl.col("stream") == "snapshot") & (pl.col("event") == event))
    return rows if pid is None else rows.filter(pl.col("pid") == pid)


def assert_snapshot_matches(df: pl.DataFrame, pid: int, truth: dict[str, int]) -> None:
    """The snapshot's smaps_rollup is the one the test read at the plateau (the workload does
    not change between the two readings but for a few interpreter pages). Pss_File is the
    target's share of file pages other processes map too: it halves when one more process maps
    the same libraries between the two readings (seen in CI), so it is only bounded."""
    got = dict(snapshot_rows(df, "smaps_rollup", pid).select("item", "bytes").iter_rows())
    assert got["Anonymous"] >= 64 * MiB
    for key in ("Rss", "Anonymous", "Pss_Anon", "Pss_Shmem"):
        assert abs(got[key] - truth[key]) <= max(0.02 * truth[key], 1 * MiB), key
    assert 0 < got["Pss_File"] <= got["Rss"] - got["Anonymous"] + 1 * MiB


def assert_file_resident(df: pl.DataFrame, name: str, size: int) -> None:
    """The file it read whole, holds open and maps is in the page cache (a few pages may have
    been reclaimed since: the machine is shared)."""
    rows = snapshot_rows(df, "file_cache").filter(
        pl.col("path").cast(pl.String).str.ends_with(name)
    )
    assert rows.height == 1, rows
    row = rows.row(0, named=True)
    assert row["total_bytes"] == size and 0.95 * size <= row["bytes"] <= size
    assert row["item"] == "mapped,open"


def assert_charges_match_memory_stat(path: Path, cgid: int) -> dict[str, dict]:
    """Over the recorded window the traced charges match the cgroup's memory.stat deltas
    within 5 % (v2 keys anon/file, v1 rss/cache); returns those reconciliation rows."""
    rep = build_report(path)
    rows = {r["key"]: r for r in rep["reconciliation"]["memcg"] if r["cgroup_id"] == cgid}
    out = {"anon": rows.get("anon", rows.get("rss")), "file": rows.get("file", rows.get("cache"))}
    for row in out.values():
        assert abs(row["traced_delta"] - row["stat_delta"]) <= 0.05 * abs(row["stat_delta"]), row
    out["report"] = rep
    return out


def rise_to_peak(df: pl.DataFrame, cgid: int) -> dict[str, int]:
    """How much anon and file memory.stat grew from the attach to their peak."""
    stat = df.filter((pl.col("event") == "memory.stat") & (pl.col("cgroup_id") == cgid))
    rise = dict(
        stat.sort("ts_ns")
        .group_by(pl.col("item").cast(pl.String))
        .agg(pl.col("bytes").max() - pl.col("bytes").first())
        .iter_rows()
    )
    return {"anon": rise.get("anon", rise.get("rss")), "file": rise.get("file", rise.get("cache"))}


def test_a_running_process_is_recorded_from_its_starting_state_to_its_exit(
    tmp_path: Path, need_root
) -> None:
    hierarchy = cgroupfs.memory_hierarchy()
    assert hierarchy is not None
    first = cold_file(tmp_path / "first.bin", 32 * MiB)
    second = cold_file(tmp_path / "second.bin", 100 * MiB)
    cg = cgroupfs.make_run_cgroup(hierarchy, f"uvmtrace-attach-{uuid.uuid4().hex[:8]}")
    work = subprocess.Popen(
        ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" -c "$1" "$2" "$3" stdin',
         sys.executable, WORKLOAD, str(first), str(second)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    out = tmp_path / "p.parquet"
    try:
        assert work.stdout.readline().strip() == "ready"
        truth = smaps_rollup(work.pid)
        recorder = start_attached(out, "--pid", str(work.pid))
        work.stdin.write("go\n")
        work.stdin.flush()
        assert work.wait(timeout=120) == 0
        _, err = recorder.communicate(timeout=60)  # ends by itself: the target exited
        assert recorder.returncode == 0, err
        assert "the targets exited" in err
    finally:
        work.kill()
        work.wait()
        cgroupfs.remove_cgroup(cg)

    rec = open_recording(out)
    attach = rec.metadata["attach"]
    assert attach["ended"] == "the targets exited"
    (target,) = attach["targets"]
    assert target["kind"] == "pid" and target["pid"] == work.pid
    assert rec.meta.extra == {} and rec.meta.attach is not None
    assert rec.meta.attach.ended == "the targets exited" and rec.meta.attach.targets == (target,)
    assert target["cgroup_charges_kept"]  # the cgroup holds nothing else
    assert rec.metadata["target_cgroups"] == [target["cgroup_id"]]
    assert definite_losses(rec.metadata) == {}
    df = rec.scan().collect()
    assert_snapshot_matches(df, work.pid, truth)
    assert_file_resident(df, "first.bin", 32 * MiB)
    assert df.filter(pl.col("event") == "exit").get_column("pid").to_list() == [work.pid]
    cgid = target["cgroup_id"]
    assert rise_to_peak(df, cgid) == pytest.approx({"anon": 200 * MiB, "file": 100 * MiB}, rel=0.05)
    rows = assert_charges_match_memory_stat(out, cgid)
    # At the exit all anonymous memory went (held before the attach too); the files stay cached.
    assert rows["anon"]["stat_delta"] == pytest.approx(-truth["Anonymous"], rel=0.05)
    assert rows["file"]["stat_delta"] == pytest.approx(100 * MiB, rel=0.05)
    # The report's baseline is the snapshot; it says what it cannot know, and how to get the
    # CUDA side next time.
    rep = rows["report"]
    (proc,) = [p for p in rep["baseline"]["processes"] if p["pid"] == work.pid]
    assert proc["anon"] == pytest.approx(truth["Anonymous"], rel=0.02)
    assert rep["phases"][0]["detail"] == f"pid {work.pid} attach"
    missing = " ".join(rep["run"]["missing"])
    assert "before the attach" in missing and "CUDA" in missing
    assert any(line.startswith("CUDA calls were not traced") for line in rep["conclusion"])


def test_a_running_container_is_recorded_until_it_exits(tmp_path: Path, need_docker) -> None:
    cold_file(tmp_path / "first.bin", 32 * MiB)
    cold_file(tmp_path / "second.bin", 100 * MiB)
    os.chmod(tmp_path, 0o755)
    name = f"uvmtrace-attach-{uuid.uuid4().hex[:8]}"
    argv = docker_python(
        name, "-c", WORKLOAD, "/data/first.bin", "/data/second.bin", "/data/go",
        mounts=[f"{tmp_path}:/data"],
    )  # fmt: skip
    argv.insert(argv.index("run") + 1, "-d")
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    out = tmp_path / "c.parquet"
    try:
        info = inspect(name)
        pid = info["State"]["Pid"]
        truth = _wait_for_plateau(pid, 64 * MiB)
        recorder = start_attached(out, "--container", name)
        (tmp_path / "go").touch()
        _, err = recorder.communicate(timeout=120)  # ends when the container does
        assert recorder.returncode == 0, err
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)

    rec = open_recording(out)
    attach = rec.metadata["attach"]
    assert attach["ended"] == "the targets exited"
    (target,) = attach["targets"]
    assert target["container"]["name"] == name and target["container"]["id"] == info["Id"]
    assert target["container"]["runtime"] == "docker"
    cgid = target["cgroup_id"]
    assert info["Id"] in target["cgroup_path"]
    assert rec.metadata["cgroups"][str(cgid)]["container_name"] == name
    assert definite_losses(rec.metadata) == {}
    df = rec.scan().collect()
    assert_snapshot_matches(df, pid, truth)
    assert_file_resident(df, "first.bin", 32 * MiB)
    assert rise_to_peak(df, cgid) == pytest.approx({"anon": 200 * MiB, "file": 100 * MiB}, rel=0.05)
    assert_charges_match_memory_stat(out, cgid)


def inspect(name: str) -> dict:
    r = subprocess.run(["docker", "inspect", name], capture_output=True, check=True, text=True)
    return json.loads(r.stdout)[0]


def container_pid(name: str) -> int:
    return inspect(name)["State"]["Pid"]


def _wait_for_plateau(pid: int, anon: int) -> dict[str, int]:
    """smaps_rollup once the workload holds `anon` and has stopped growing (it said ready)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        first = smaps_rollup(pid)
        if first.get("Anonymous", 0) >= anon:
            time.sleep(0.3)
            second = smaps_rollup(pid)
            if second.get("Rss") == first.get("Rss"):
                return second
        time.sleep(0.1)
    raise AssertionError("the container's workload never reached its plateau")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pid", "4194304"], "no running process with pid 4194304"),
        (["--cgroup", "/no-such-cgroup"], "no memory cgroup /no-such-cgroup"),
        (["--pid", "1", "--", "true"], "not both"),
        (["--duration", "5", "--", "true"], "--duration applies to"),
    ],
)
def test_a_target_that_does_not_exist_is_one_line(tmp_path: Path, args, message: str) -> None:
    r = uvmtrace("record", "-o", str(tmp_path / "x.parquet"), *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_container_that_does_not_exist_is_one_line(tmp_path: Path, need_docker) -> None:
    r = uvmtrace("record", "-o", str(tmp_path / "x.parquet"), "--container", "no-such-ctr-xyz")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "uvmtrace: error: no container no-such-ctr-xyz (docker knows none by that name or id)"
    )
    # `headroom --container` looks containers up the same way (containers.find_running)
    r = uvmtrace("headroom", "--container", "no-such-ctr-xyz")
    assert r.returncode == 2
    assert r.stderr.strip().endswith("no container no-such-ctr-xyz (docker knows none by that "
                                     "name or id)")  # fmt: skip


# Asks libc's sysinfo() (what TensorRT-LLM sizes its KV cache by under UVM) once before and
# twice after being told to go on.
ASKS_SYSINFO = textwrap.dedent(
    """
    import ctypes, os, time
    libc = ctypes.CDLL(None)
    info = ctypes.create_string_buffer(256)
    libc.sysinfo(info)
    open("/data/ready", "w").close()
    while not os.path.exists("/data/go"):
        time.sleep(0.05)
    libc.sysinfo(info)
    libc.sysinfo(info)
    time.sleep(0.5)
    os._exit(0)
    """
)


def test_a_container_started_with_the_shim_gives_its_cuda_side_since_its_start(
    tmp_path: Path, need_docker, shim: Path
) -> None:
    from uvmtrace.tracer.containers import RUN_DIR_IN_CONTAINER, SHIM_IN_CONTAINER

    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    os.chmod(shim_dir, 0o1733)
    (shim_dir / "7-4026599999.uvm").write_bytes(b"another run's file")  # not read
    os.chmod(tmp_path, 0o777)
    name = f"uvmtrace-attach-{uuid.uuid4().hex[:8]}"
    # What the compose example in the recording's advice sets up.
    argv = docker_python(
        name, "-c", ASKS_SYSINFO,
        mounts=[f"{tmp_path}:/data", f"{shim}:{SHIM_IN_CONTAINER}:ro",
                f"{shim_dir}:{RUN_DIR_IN_CONTAINER}"],
    )  # fmt: skip
    at = argv.index("run") + 1
    argv[at:at] = ["-d", "-e", f"LD_PRELOAD={SHIM_IN_CONTAINER}",
                   "-e", f"UVMTRACE_SHIM_DIR={RUN_DIR_IN_CONTAINER}"]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    out = tmp_path / "s.parquet"
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ready").exists():
            assert time.monotonic() < deadline, "the container never asked sysinfo"
            time.sleep(0.05)
        pid = container_pid(name)
        recorder = start_attached(out, "--container", name)
        (tmp_path / "go").touch()
        _, err = recorder.communicate(timeout=120)
        assert recorder.returncode == 0, err
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)

    rec = open_recording(out)
    attach = rec.metadata["attach"]
    assert attach["shim"][0]["dir"] == RUN_DIR_IN_CONTAINER
    assert attach["cuda_next_time"] is None
    assert not [e for e in rec.metadata["not_traced"] if "CUDA" in e["what"]]
    assert rec.metadata["shim"]["skipped_files"] == {}  # the other run's file was left alone
    calls = rec.scan().filter(pl.col("event") == "sysinfo").filter(pl.col("stream") == "cuda")
    calls = calls.collect()
    assert calls.get_column("pid").unique().to_list() == [pid]
    assert (calls.get_column("free_bytes") > 0).all()
    before = calls.filter(pl.col("ts_ns") < attach["attached_ns"]).height
    assert (before, calls.height - before) == (1, 2)  # the one before the attach is there too


@pytest.mark.parametrize("stop", ["duration", "ctrl-c"])
def test_stopping_the_recording_leaves_the_target_running(tmp_path: Path, stop: str) -> None:
    target = subprocess.Popen(["sleep", "300"])
    out = tmp_path / "s.parquet"
    try:
        extra = ["--duration", "1"] if stop == "duration" else []
        recorder = start_attached(out, "--pid", str(target.pid), *extra)
        if stop == "ctrl-c":
            recorder.send_signal(signal.SIGINT)
        _, err = recorder.communicate(timeout=60)
        assert recorder.returncode == 0, err
        assert target.poll() is None  # untouched
    finally:
        target.kill()
        target.wait()
    attach = open_recording(out).metadata["attach"]
    assert attach["ended"] == (
        "--duration 1 s elapsed" if stop == "duration" else "stopped by SIGINT"
    )


def test_attaching_to_an_existing_output_needs_force_and_numbers_an_old_spool(
    tmp_path: Path,
) -> None:
    out = tmp_path / "attach.parquet"
    out.write_bytes(b"an earlier recording")
    old_spool = tmp_path / "attach.parquet.spool"
    old_spool.mkdir()
    target = subprocess.Popen(["sleep", "30"])
    try:
        refused = uvmtrace("record", "-o", str(out), "--pid", str(target.pid), "--duration", "1")
        assert refused.returncode != 0
        assert refused.stderr.strip().endswith("exists; use --force to overwrite it, or choose "
                                               "another -o"), refused.stderr  # fmt: skip
        assert out.read_bytes() == b"an earlier recording"

        forced = uvmtrace(
            "record", "--force", "-o", str(out), "--pid", str(target.pid), "--duration", "1"
        )
        assert forced.returncode == 0, forced.stderr
        assert f"its spool is now {old_spool}.1" in forced.stderr
        assert (tmp_path / "attach.parquet.spool.1").is_dir()
        assert open_recording(out).num_rows > 0
    finally:
        target.kill()
        target.wait()
