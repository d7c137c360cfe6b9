"""The shim against a stand-in driver built from C here: every interposition path, threads,
fork + exec, SIGKILL, an unusable run directory, and results that never change."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from uvmtrace.shim.build import glibc_needed
from uvmtrace.shim.decode import ShimDecoder
from uvmtrace.shim.rundir import make_run_dir, shim_env

STAND_IN = Path(__file__).parent / "stand_in_driver"
MiB = 1 << 20
GiB = 1 << 30


# What `driver_user direct` calls, in order: one record each.
DIRECT_EVENTS = [
    "cuDevicePrimaryCtxRetain",
    "cuMemGetInfo",
    "cuMemAlloc",
    "cuMemAlloc",
    "cuMemGetInfo",
    "cuMemAllocManaged",
    "cuMemAllocManaged",
    "cuMemHostAlloc",
    "cuMemFreeHost",
    "cuMemFree",
    "cuMemFree",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetMemoryInfo",
    "sysinfo",
    "sysinfo",
    "cuMemGetInfo",
]


def run(driver: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = dict(os.environ if env is None else env)
    base["LD_LIBRARY_PATH"] = str(driver)
    return subprocess.run(
        [str(driver / "driver_user"), *args], env=base, capture_output=True, text=True, timeout=120
    )


def run_shimmed(driver: Path, shim: Path, run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return run(driver, *args, env=shim_env(run_dir, lib=shim))


def decode(run_dir: Path) -> tuple[pa.Table, dict]:
    dec = ShimDecoder(run_dir)
    batches = dec.poll() + dec.close()
    from uvmtrace.recording.schema import SCHEMA

    return pa.Table.from_batches(batches, schema=SCHEMA), dec.stats()


def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def printed(stdout: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        key, *vals = line.split(" ")
        out.setdefault(key, []).append(vals)
    return out


def test_direct_calls_are_recorded_and_results_unchanged(driver, shim, tmp_path):
    plain = run(driver, "direct")
    shimmed = run_shimmed(driver, shim, tmp_path, "direct")
    assert shimmed.stdout == plain.stdout  # every result, errno included, as without the shim
    assert shimmed.stderr == ""
    table, stats = decode(tmp_path)
    got = rows(table)
    assert [r["event"] for r in got] == DIRECT_EVENTS
    p = printed(plain.stdout)
    alloc, oom = got[2], got[3]
    assert (alloc["bytes"], alloc["addr"], alloc["result_name"]) == (
        3 * MiB,
        int(p["cuMemAlloc"][0][1], 16),
        "CUDA_SUCCESS",
    )
    assert (oom["bytes"], oom["result"], oom["result_name"]) == (
        1 << 40,
        2,
        "CUDA_ERROR_OUT_OF_MEMORY",
    )
    after = got[4]
    assert (after["free_bytes"], after["total_bytes"]) == (16 * GiB - 3 * MiB, 16 * GiB)
    assert got[9]["addr"] == alloc["addr"] and got[10]["result_name"] == "CUDA_ERROR_INVALID_VALUE"
    assert got[5]["flags"] == 1 and got[6]["result"] == 1
    assert (got[11]["free_bytes"], got[11]["total_bytes"]) == (12 * GiB, 16 * GiB)
    assert got[12]["result_name"] == "NVML_ERROR_ARGUMENT_VERSION_MISMATCH"
    assert got[13]["free_bytes"] == 11 * GiB
    assert got[14]["total_bytes"] == int(p["sysinfo"][0][1]) * int(p["sysinfo"][0][2])
    assert (got[15]["result"], got[15]["result_name"]) == (-1, "EFAULT")
    pid = got[0]["pid"]
    assert all(r["pid"] == pid == r["tid"] == r["ns_pid"] for r in got)
    assert all(r["stream"] == "cuda" and r["dur_ns"] >= 0 for r in got)
    assert all(r["caller"].startswith("driver_user!") for r in got)
    assert stats["files"] == 1 and stats["records"] == len(DIRECT_EVENTS) and stats["torn"] == 0


def test_calls_through_cuGetProcAddress_like_cudart(driver, shim, tmp_path):
    # dlopen(RTLD_LOCAL) + dlsym(handle, "cuGetProcAddress_v2") + the self look-up: the only
    # way cudart >= 11.3 reaches cuMemAlloc and cuMemGetInfo.
    plain = run(driver, "procaddr")
    shimmed = run_shimmed(driver, shim, tmp_path, "procaddr")
    assert shimmed.stdout == plain.stdout
    p = printed(plain.stdout)
    assert p["distinct"] == [["ptsz", "1"]]
    table, stats = decode(tmp_path)
    got = [(r["event"], r["bytes"], r["addr"]) for r in rows(table)]
    assert got == [
        ("cuMemGetInfo", None, None),
        ("cuMemAlloc", 5 * MiB, int(p["alloc"][0][1], 16)),
        ("cuMemAllocAsync", MiB, int(p["alloc_async"][0][1], 16)),
        ("cuMemAllocAsync", MiB, int(p["alloc_async_ptsz"][0][1], 16)),  # per-thread stream
        ("cuMemAlloc", MiB, int(p["alloc_v1path"][0][1], 16)),  # through cuGetProcAddress v1
        ("cuCtxCreate", None, int(p["ctx_create"][0][1], 16)),  # _v3 since CUDA 11.4
        ("cuMemFree", None, int(p["alloc"][0][1], 16)),
    ]
    ctx = rows(table)[-2]
    assert (ctx["flags"], ctx["item"], ctx["result_name"]) == (4, "device 0", "CUDA_SUCCESS")
    assert stats["lookups"] >= 8 and stats["passthrough"] == 0


def test_threads_each_call_exactly_one_whole_record(driver, shim, tmp_path):
    threads, calls = 8, 5000
    shimmed = run_shimmed(driver, shim, tmp_path, "threads", str(threads), str(calls))
    assert shimmed.stdout == f"done {threads * calls}\n"
    table, stats = decode(tmp_path)
    assert table.num_rows == threads * calls and stats["torn"] == 0 and stats["dropped"] == 0
    per_tid = table.group_by("tid").aggregate([("ts_ns", "count")]).column("ts_ns_count")
    assert sorted(per_tid.to_pylist()) == [calls] * threads
    assert set(table.column("free_bytes").to_pylist()) == {16 * GiB}


def test_fork_and_exec_children_get_their_own_files(driver, shim, tmp_path):
    shimmed = run_shimmed(driver, shim, tmp_path, "forkexec")
    exec_child, fork_child = (int(x) for x in printed(shimmed.stdout)["children"][0])
    files = sorted(tmp_path.glob("*.uvm"))
    assert len(files) == 4  # parent, fork child, exec child before and after exec
    table, stats = decode(tmp_path)
    by_pid: dict[int, list[str]] = {}
    for r in sorted(rows(table), key=lambda r: r["ts_ns"]):
        by_pid.setdefault(r["pid"], []).append(r["event"])
    parent = next(pid for pid in by_pid if pid not in (exec_child, fork_child))
    assert by_pid[parent] == ["cuMemGetInfo"]
    assert by_pid[fork_child] == ["cuMemGetInfo", "cuMemGetInfo"]
    assert by_pid[exec_child][0] == "cuMemAlloc"  # before exec, its own file
    # plus everything `direct` does after exec
    assert len(by_pid[exec_child]) == 1 + len(DIRECT_EVENTS)
    assert stats["files"] == 4 and stats["torn"] == 0


def test_sigkill_mid_run_leaves_every_record_up_to_the_kill(driver, shim, tmp_path):
    env = shim_env(tmp_path, lib=shim)
    env["LD_LIBRARY_PATH"] = str(driver)
    proc = subprocess.Popen(
        [str(driver / "driver_user"), "loop"], env=env, stdout=subprocess.PIPE, text=True
    )
    dec = ShimDecoder(tmp_path)
    seen = []
    last = 0
    while last < 5000:
        last = int(proc.stdout.readline())
        seen += dec.poll()  # the recorder reads while the program runs
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    seen += dec.poll() + dec.close()
    table = pa.Table.from_batches(seen)
    events = table.column("event").to_pylist()
    assert table.num_rows >= 2 * last
    assert dec.stats()["torn"] <= 1  # at most the one record being written at the kill
    assert events[::2] == ["cuMemAlloc"] * len(events[::2])
    assert events[1::2] == ["cuMemFree"] * len(events[1::2])
    allocs = table.filter(pa.compute.equal(table.column("event"), "cuMemAlloc"))
    assert set(allocs.column("bytes").to_pylist()) == {MiB}
    ts = table.column("ts_ns").to_numpy()
    assert (ts[1:] >= ts[:-1]).all()  # one thread: slots are in time order


def test_record_times_are_the_monotonic_clock_of_the_call(driver, shim, tmp_path):
    # The shim extrapolates CLOCK_MONOTONIC from the CPU's counter between real readings: each
    # record must still lie within the program's own clock reads around the call, with threads,
    # and across sleeps longer than the extrapolation window.
    threads, calls = 3, 6000
    out = run_shimmed(driver, shim, tmp_path, "clocked", str(threads), str(calls))
    assert out.returncode == 0, out.stderr
    brackets: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for line in out.stdout.splitlines():
        tid, call, before, after = line.split()
        brackets.setdefault((int(tid), call), []).append((int(before), int(after)))
    table, _ = decode(tmp_path)
    recs: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for r in rows(table.sort_by("ts_ns")):
        if r["event"] in ("cuMemGetInfo", "cuMemAlloc"):
            recs.setdefault((r["tid"], r["event"]), []).append((r["ts_ns"], r["dur_ns"]))
    assert recs.keys() == brackets.keys() and len(recs) == 2 * threads
    slack = 1000  # ns: the rate's error over 1 ms, and the pairing of the counter with the clock
    worst = 0
    for key, calls_seen in recs.items():
        assert len(calls_seen) == calls
        for (ts, dur), (before, after) in zip(calls_seen, brackets[key], strict=True):
            worst = max(worst, before - ts, ts + dur - after)
    assert worst <= slack, f"a record lies {worst} ns outside its call"


def test_a_file_size_limit_stops_the_recording_not_the_program(driver, shim, tmp_path):
    # Past RLIMIT_FSIZE (`ulimit -f`) the kernel kills a process that grows a file (SIGXFSZ):
    # the shim must stop short of the limit. Room for the header and the first chunk only.
    import resource

    from uvmtrace.shim import file_layout as layout

    chunk = layout.CHUNK_RECORDS * layout.RECORD_SIZE
    limit = layout.HEADER_SIZE + chunk + 65536

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = shim_env(tmp_path, lib=shim)
    env["LD_LIBRARY_PATH"] = str(driver)
    calls = 3 * layout.CHUNK_RECORDS
    out = subprocess.run(
        [str(driver / "driver_user"), "threads", "1", str(calls)],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=limited,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, f"done {calls}\n", "")
    table, stats = decode(tmp_path)
    assert table.num_rows == layout.CHUNK_RECORDS
    assert stats["dropped"] == calls - layout.CHUNK_RECORDS and stats["torn"] == 0
    assert any("file size limit" in n["why"] for n in stats["notes"])
    assert all(p.stat().st_size <= limit for p in tmp_path.iterdir())


def test_a_full_disk_stops_the_recording_not_the_program(driver, shim, tmp_path, need_root):
    # A mapped page with no block behind it would SIGBUS the program: the shim reserves and
    # writes each chunk before mapping it, and on ENOSPC stops recording.
    from uvmtrace.shim import file_layout as layout

    disk = tmp_path / "disk"
    disk.mkdir()
    chunk = layout.CHUNK_RECORDS * layout.RECORD_SIZE
    size = layout.HEADER_SIZE + chunk + 128 * 1024
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], check=True)
    try:
        calls = 3 * layout.CHUNK_RECORDS
        out = run_shimmed(driver, shim, disk, "threads", "1", str(calls))
        assert (out.returncode, out.stdout, out.stderr) == (0, f"done {calls}\n", "")
        table, stats = decode(disk)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert table.num_rows == layout.CHUNK_RECORDS
    assert stats["dropped"] == calls - layout.CHUNK_RECORDS and stats["torn"] == 0
    assert any("disk full" in n["why"] for n in stats["notes"])


@pytest.mark.parametrize("kind", ["absent", "a regular file"])
def test_unusable_run_dir_passes_through_silently(driver, shim, tmp_path, kind):
    # The program's output is its own: where the shim cannot record, it says nothing there.
    run_dir = tmp_path / "nope"
    if kind == "a regular file":
        run_dir.write_text("")
    plain = run(driver, "direct")
    shimmed = run_shimmed(driver, shim, run_dir, "direct")
    assert (shimmed.returncode, shimmed.stdout, shimmed.stderr) == (0, plain.stdout, plain.stderr)


def test_python_ctypes_program_under_the_shim(driver, shim, tmp_path):
    program = textwrap.dedent(
        """
        import ctypes
        cuda = ctypes.CDLL("libcuda.so.1")
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        ptr = ctypes.c_ulonglong()
        print(cuda.cuMemAlloc_v2(ctypes.byref(ptr), 7 << 20), ptr.value)
        print(cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)), free.value)
        """
    )
    env = shim_env(tmp_path, lib=shim)
    env["LD_LIBRARY_PATH"] = str(driver)
    out = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    )
    (rc1, addr), (rc2, free) = (line.split() for line in out.stdout.splitlines())
    table, _ = decode(tmp_path)
    got = [(r["event"], r["bytes"], r["addr"], r["free_bytes"]) for r in rows(table)]
    assert got == [
        ("cuMemAlloc", 7 * MiB, int(addr), None),
        ("cuMemGetInfo", None, None, int(free)),
    ]


def test_dlsym_rtld_next_still_resolves_relative_to_the_caller(driver, shim, tmp_path):
    # Our dlsym forwards RTLD_NEXT as a sibling call, so glibc sees the program as the caller.
    assert run_shimmed(driver, shim, tmp_path, "dlsym_next").stdout == "next==default 1\n"


def test_decoder_skips_files_that_are_not_shim_files(driver, shim, tmp_path):
    run_dir = make_run_dir(tmp_path)
    assert oct(run_dir.stat().st_mode & 0o7777) == "0o700"
    (run_dir / "junk.uvm").write_bytes(b"x" * 70000)
    (run_dir / "link.uvm").symlink_to("/etc/passwd")
    run_shimmed(driver, shim, run_dir, "threads", "1", "3")
    table, stats = decode(run_dir)
    assert table.num_rows == 3
    assert set(stats["skipped_files"]) == {"junk.uvm", "link.uvm"}


def test_run_dir_for_other_uids_is_sticky_and_unlistable(tmp_path):
    run_dir = make_run_dir(tmp_path, other_uids=True)
    assert oct(run_dir.stat().st_mode & 0o7777) == "0o1733"


def test_library_loads_with_old_glibc_and_exports_only_hooks(shim):
    needed = glibc_needed(shim)
    assert needed is not None
    assert tuple(int(x) for x in needed[6:].split(".")) <= (2, 17)
    nm = subprocess.run(["nm", "-D", "--defined-only", str(shim)], capture_output=True, text=True)
    if nm.returncode == 0:
        exported = {line.split()[-1] for line in nm.stdout.splitlines() if " T " in line}
        assert exported and all(
            name.startswith(("cu", "nvml")) or name in ("dlsym", "sysinfo") for name in exported
        )


def test_shim_run_command_writes_a_recording(driver, shim, tmp_path):
    out = tmp_path / "cuda.parquet"
    env = dict(os.environ, LD_LIBRARY_PATH=str(driver))
    args = ["shim", "run", "-o", str(out), "--", str(driver / "driver_user"), "forkexec"]
    proc = subprocess.run(
        [sys.executable, "-m", "uvmtrace.cli", *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    from uvmtrace.recording.reader import open_recording

    rec = open_recording(out)
    df = rec.scan().collect()
    assert df.height == 1 + 2 + 1 + len(DIRECT_EVENTS)
    assert set(df["stream"].to_list()) == {"cuda"}
    assert "4 process(es)" in proc.stderr


def test_bench_reaches_an_rtld_local_driver_under_the_shim(driver, shim, tmp_path):
    # bench/shim_bench.py's program dlopens libcuda RTLD_LOCAL and links nothing: the stand-in's
    # own pointers bind to the shim's exports, which must then find the real ones by handle.
    out = tmp_path / "bench.json"
    env = dict(os.environ, LD_LIBRARY_PATH=str(driver))
    bench = Path(__file__).resolve().parent.parent / "bench" / "shim_bench.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(bench),
            "--shim",
            str(shim),
            "--repeats",
            "1",
            "--info",
            "1000",
            "--alloc",
            "100",
            "--launch",
            "1",
            "--json",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    median = json.loads(out.read_text())["median"]
    assert median["cuMemGetInfo_ns"]["with"] > 0 and median["launch_ns"]["with"] == -1


def test_real_driver_records_match_what_the_programs_saw(tmp_path):
    # Record files the shim wrote on the H200 under PyTorch, cuda-python and cudart
    # (tests/data/shim_h200), decoded here: each program's own numbers (torch.cuda.mem_get_info,
    # memory_reserved, pinned data_ptr, cudaMemGetInfo, ...) must come out of the records.
    import importlib.util
    import tarfile

    root = Path(__file__).resolve().parent.parent
    with tarfile.open(root / "tests" / "data" / "shim_h200" / "shim_runs.tar.gz") as tar:
        # extraction filters exist from Python 3.11.4 on; the file is ours either way
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp_path, **safe)
    spec = importlib.util.spec_from_file_location(
        "verify_shim_gpu", root / "scripts" / "gpu" / "verify_shim_gpu.py"
    )
    verify = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verify)
    checks = verify.check(tmp_path / "runs")
    assert len(checks) == 12 and all(checks.values()), [k for k, ok in checks.items() if not ok]
