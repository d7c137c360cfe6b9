"""Analysis of the cases real recordings showed (H100 without a kernel stream, a CPU demo with
strangers adopted into the trace, uvmtrace's own shim files in the page cache), rebuilt with
known numbers through the real writer (tests/recordings.py)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from tests.recordings import (
    CONTAINER_ID,
    DOCKER_CGROUP,
    GIB,
    MIB,
    NATIVE_CGROUP,
    PID,
    Recorder,
    docker_recorder,
    native_recorder,
)
from uvmtrace.analysis.host_memory import SOURCE_CHARGES, SOURCE_STAT
from uvmtrace.analysis.load import load_run
from uvmtrace.analysis.render_json import load_schema, to_json
from uvmtrace.analysis.report import build_diff, build_report
from uvmtrace.analysis.scope import command_pids
from uvmtrace.analysis.tables import diff_tables, report_tables

KIB = 1 << 10
NO_TRACEFS = {"what": "kernel events", "why": "tracefs is not mounted"}
DISCRETE = {"unified_memory": False, "devices": [{"name": "NVIDIA H100 80GB HBM3"}]}
FREE_H100 = 82_183_389_184  # cuMemGetInfo free on the H100, both runs (76.5 GiB)


def _h100_run(
    path: Path, cgroup: int, *, file: int, anon: int, nvml_used_delta: int | None = None
) -> Path:
    """A kvsizer run on a discrete GPU recorded without BCC: cuda, proc, sample and log streams
    only. The cgroup holds `file` bytes of page cache and `anon` at the sizing query (4.0 s)."""
    rec = Recorder(
        gpu=DISCRETE,
        cgroup_version="v2",
        not_traced=[NO_TRACEFS],
        cgroups={str(cgroup): {"path": f"/run-{cgroup}", "hierarchy": "v2"}},
        target_cgroups=[cgroup],
    )
    rec.launched(0.0, PID, "python3 kvsizer.py --signal cuda")
    rec.memory_stat(0.0, cgroup, anon=0, file=0, shmem=0, kernel=0)
    rec.nvml(0.0, used=GIB)
    rec.alloc(0.5, "cuMemAlloc_v2", 2 * GIB, addr=0x1000)
    # a sample far from the sizing instant must not be the one compared
    rec.memory_stat(1.0, cgroup, anon=anon // 2, file=file // 4, shmem=0, kernel=MIB)
    rec.query(4.0, "cuMemGetInfo", free=FREE_H100, total=80 * GIB)
    rec.memory_stat(4.05, cgroup, anon=anon, file=file, shmem=0, kernel=MIB)
    rec.alloc(4.1, "cuMemAlloc_v2", int(0.9 * FREE_H100), addr=0x2000)
    used = (
        GIB + 2 * GIB + int(0.9 * FREE_H100) if nvml_used_delta is None else GIB + nvml_used_delta
    )
    rec.nvml(4.2, used=used)
    rec.add(4.5, "proc", "proc_faults", pid=PID, item="minflt", count=50_000)
    rec.add(4.5, "proc", "wait_status", pid=PID, result=0)
    return rec.write(path)


def test_without_a_kernel_stream_trust_is_judged_on_the_cuda_side_and_says_why(tmp_path: Path):
    rep = build_report(_h100_run(tmp_path / "a.parquet", 2060, file=MIB, anon=100 * MIB))
    rc = rep["reconciliation"]
    # memory.stat and /proc are there, but nothing traced to hold them against: no "0 %" checks
    assert rc["memcg"] == [] and rc["faults"] == []
    assert rc["summary"]["kernel_traced"] is False
    assert rc["cuda_vs_nvml"]["cuda_net_bytes"] == rc["cuda_vs_nvml"]["nvml_used_delta"]
    assert rep["conclusion"][-1] == (
        "Trust: high (CUDA side only) — kernel side not traced (kernel events: tracefs is not "
        "mounted); CUDA allocations vs NVML used differ by 0 MiB; 0 events lost."
    )
    assert (
        "Missing: no kernel stream: memory charges, page faults and page cache were not traced "
        "(kernel events: tracefs is not mounted)." in rep["conclusion"]
    )
    assert not any("0%" in line for line in rep["conclusion"])


def test_without_a_kernel_stream_nvml_disagreeing_with_cuda_lowers_the_trust(tmp_path: Path):
    # NVML saw 40 GiB more in use, CUDA allocations 2 GiB + 0.9 x free = 70.9 GiB
    path = _h100_run(tmp_path / "a.parquet", 2060, file=MIB, anon=0, nvml_used_delta=40 * GIB)
    summary = build_report(path)["reconciliation"]["summary"]
    assert summary["trust"] == "low"
    assert summary["line"].startswith("Trust: low (CUDA side only) — kernel side not traced")


def test_a_discrete_gpu_signal_ignores_the_page_cache_the_limited_cgroup_holds(tmp_path: Path):
    # A: warm cache elsewhere; B: 3 GiB memory.max, the 2 GiB weights read cold into its cgroup
    a = _h100_run(tmp_path / "native.parquet", 2060, file=856 * KIB, anon=100 * MIB)
    b = _h100_run(tmp_path / "limited.parquet", 2099, file=2 * GIB + 856 * KIB, anon=100 * MIB)
    d = build_diff(a, b)
    host = d["decomposition"]["host_memory"]
    assert host["source"] == SOURCE_STAT
    assert host["by_kind"] == {"file": 2 * GIB}  # anon and kernel memory equal in both
    assert host["difference_bytes"] == host["b_bytes"] - host["a_bytes"] == 2 * GIB
    assert d["signal"]["difference_bytes"] == 0 and d["signal"]["device_memory"]
    assert d["conclusion"][0] == (
        "B's cuMemGetInfo free at the KV-sizing call equals A's (76.5 GiB) although B's cgroup "
        "held +2.0 GiB more host memory (page cache +2.0 GiB) at that moment: this signal does "
        "not count host memory (discrete GPU; metadata gpu.unified_memory false)."
    )
    assert d["conclusion"][1] == (
        "Host memory from memory.stat samples of the target cgroups at the sizing instant "
        "(no kernel stream)."
    )
    rows = dict((r[0], r[1]) for r in diff_tables(d)[1][2])
    assert rows["host memory held (B - A), not in the signal"] == "+2.0 GiB"
    jsonschema.Draft202012Validator(load_schema()).validate(json.loads(to_json(d)))


def test_nested_v2_targets_are_not_counted_twice_in_host_memory(tmp_path: Path):
    a = _h100_run(tmp_path / "a.parquet", 2060, file=0, anon=0)
    rec = Recorder(
        gpu=DISCRETE,
        not_traced=[NO_TRACEFS],
        cgroups={"2099": {"path": "/limited"}, "2100": {"path": "/limited/worker"}},
        target_cgroups=[2099, 2100],
    )
    rec.query(4.0, "cuMemGetInfo", free=FREE_H100)
    # v2 memory.stat of /limited already holds /limited/worker's 1 GiB
    rec.memory_stat(4.0, 2099, anon=0, file=GIB + GIB // 2, shmem=GIB // 2, kernel=MIB)
    rec.memory_stat(4.0, 2100, anon=0, file=GIB, shmem=0, kernel=0)
    rec.alloc(4.1, "cuMemAlloc_v2", int(0.9 * FREE_H100), addr=0x2000)
    d = build_diff(a, rec.write(tmp_path / "b.parquet"))
    # page cache = file - shmem (v2 `file` counts tmpfs too)
    assert d["decomposition"]["host_memory"]["by_kind"] == {"file": GIB, "shmem": GIB // 2}


def test_with_a_kernel_stream_a_discrete_gpu_diff_takes_host_memory_from_the_charges(
    tmp_path: Path,
):
    a = native_recorder(gpu=DISCRETE).write(tmp_path / "a.parquet")
    rec = docker_recorder(gpu=DISCRETE)
    # dockerd's own cgroup is traced too (adopted charges), but it is not where B ran
    rec.charge(1.5, 5, "NR_FILE_PAGES", 4 * GIB, pid=4262, comm="dockerd")
    b = rec.write(tmp_path / "b.parquet")
    d = build_diff(a, b)
    host = d["decomposition"]["host_memory"]
    assert host["source"] == SOURCE_CHARGES
    assert host["by_kind"] == {"file": 20 * GIB, "shmem": 2 * GIB, "kernel": GIB}
    assert d["conclusion"][0] == (
        "B's cuMemGetInfo free at the KV-sizing call was 23.5 GiB lower (60.0 GiB in A, 36.5 GiB "
        "in B); 0 B of it is CUDA device memory B held; 23.5 GiB unexplained. B's cgroup held "
        "+23.0 GiB more host memory (page cache +20.0 GiB, shmem/tmpfs +2.0 GiB, kernel memory "
        "+1.0 GiB) at that moment, which this signal does not count (a device-memory signal: "
        "discrete GPU; metadata gpu.unified_memory false)."
    )
    assert d["conclusion"][1] == (
        "Host memory from eBPF memcg charges to the target cgroups since the start."
    )


STRANGER = 900  # another session's process, adopted by the probes after it touched a target page


def _stranger_story(rec: Recorder) -> Recorder:
    """pid 100 (launched) forks 101, which asks sysinfo() and maps 0.9 x its answer; pid 900 of
    another session reads /proc/meminfo and maps a bigger 0.1 x MemAvailable right after."""
    rec.launched(0.0, PID, "python3 -m kvsizer")
    rec.fork(0.1, PID + 1, PID)
    rec.meminfo(0.0, MemFree=10 * GIB, MemAvailable=40 * GIB)
    rec.charge(0.5, NATIVE_CGROUP, "NR_ANON_MAPPED", 64 * MIB, pid=PID + 1)
    rec.add(0.6, "proc", "exec", pid=STRANGER, comm="bench", text="/usr/bin/bench")
    rec.charge(0.6, 77, "NR_ANON_MAPPED", GIB, pid=STRANGER, comm="bench")
    rec.charge(0.6, 77, "NR_FILE_PAGES", GIB, pid=STRANGER, comm="bench")
    rec.charge(0.7, NATIVE_CGROUP, "NR_ACTIVE_FILE", 4096, pid=STRANGER, comm="bench")
    rec.query(1.0, "sysinfo", free=2 * GIB, pid=PID + 1, stream="kernel")
    rec.mapping(1.1, PID + 1, int(0.9 * 2 * GIB))
    rec.add(1.2, "kernel", "openat", pid=STRANGER, path="/proc/meminfo")
    rec.meminfo(1.2, MemFree=10 * GIB, MemAvailable=40 * GIB)
    rec.mapping(1.3, STRANGER, int(0.1 * 40 * GIB))
    return rec


def test_kv_sizing_looks_only_at_the_traced_command_s_processes(tmp_path: Path):
    rec = _stranger_story(Recorder(target_cgroups=[NATIVE_CGROUP]))
    rep = build_report(rec.write(tmp_path / "a.parquet"))
    kv = rep["sizing"]["kv"]
    assert (kv["pid"], kv["bytes"], kv["signal"], kv["fraction"]) == (
        PID + 1,
        int(0.9 * 2 * GIB),
        "sysinfo",
        0.9,
    )
    assert [a["pid"] for a in rep["sizing"]["allocations"]] == [PID + 1]
    (out,) = rep["sizing"]["outside_command"]
    assert (out["pid"], out["comm"], out["bytes"]) == (STRANGER, "bench", int(0.1 * 40 * GIB))
    assert (
        "1 large allocation(s) by processes outside the traced command were not considered "
        "(bench 900 mmap 4.0 GiB)." in rep["conclusion"]
    )


def test_the_command_is_its_tree_its_cgroups_the_container_and_the_cuda_stream(tmp_path: Path):
    rec = _stranger_story(
        Recorder(
            target_cgroups=[NATIVE_CGROUP],
            container={"cgroup_id": DOCKER_CGROUP, "name": "trt", "id": CONTAINER_ID},
        )
    )
    rec.charge(2.0, DOCKER_CGROUP, "NR_ANON_MAPPED", GIB, pid=200)  # the container's workload
    rec.fork(2.1, 201, 200)  # its child, before it charged anything
    rec.query(2.2, "cuMemGetInfo", free=GIB, pid=300)  # seen by the shim: preloaded, ours
    assert command_pids(load_run(rec.write(tmp_path / "a.parquet"))) == {
        PID,
        PID + 1,
        200,
        201,
        300,
    }


def test_a_recording_that_tells_no_scope_keeps_every_process(tmp_path: Path):
    rec = Recorder()
    rec.add(1.0, "kernel", "openat", pid=7, path="/proc/meminfo")
    rec.meminfo(1.0, MemFree=10 * GIB, MemAvailable=40 * GIB)
    rec.mapping(1.5, 7, int(0.85 * 40 * GIB))
    run = load_run(rec.write(tmp_path / "x.parquet"))
    assert command_pids(run) is None
    assert build_report(tmp_path / "x.parquet")["sizing"]["kv"]["pid"] == 7


OWN = [
    ("/.uvmtrace/run/1-1548012907279.uvm", 832 * KIB),
    ("/.uvmtrace/run/1-1548012907279.uvm.syms", 4 * KIB),
    ("/out/.docker.parquet.uvmtrace/uvms/2-99.uvm", 64 * KIB),
    ("/out/docker.parquet.spool/events.arrows", 128 * KIB),
]


def test_uvmtrace_s_own_files_are_one_line_never_the_explanation(tmp_path: Path):
    a = native_recorder().write(tmp_path / "a.parquet")
    rec = docker_recorder()
    for path, nbytes in OWN:
        rec.filemap(2.8, path, nbytes, None)
    rec.add(2.8, "kernel", "mmap", pid=PID, bytes=832 * KIB, path=OWN[0][0], result=1 << 40)
    b = rec.write(tmp_path / "b.parquet")
    own_bytes = sum(n for _, n in OWN)

    rep = build_report(b)
    att = rep["attribution"]
    assert [f["path"] for f in att["by_file"]] == ["/weights.bin"]
    assert att["own_files"] == {
        "files": 4,
        "peak": own_bytes,
        "end": own_bytes,
        "mapped_bytes": 832 * KIB,
    }
    files_table = next(t for t in report_tables(rep) if t[0].startswith("Files"))
    assert files_table[2][-1] == ["uvmtrace's own files (4)", "", "1.0 MiB", "1.0 MiB", "832.0 KiB"]
    assert any("biggest file in its page cache: /weights.bin 21.0 GiB" in line
               for line in rep["conclusion"])  # fmt: skip

    d = build_diff(a, b)
    dec = d["decomposition"]
    assert [f["key"] for f in dec["by_file"]] == ["/weights.bin"]
    assert dec["own_files"] == {"a_bytes": 0, "b_bytes": own_bytes, "difference": own_bytes}
    assert "page cache of /weights.bin charged to container trt" in d["conclusion"][0]
    assert not any("uvm" in line for line in d["conclusion"][:2])
    by_file = next(t for t in diff_tables(d) if t[0].startswith("By file"))
    assert by_file[2][-1] == ["uvmtrace's own files", "0 B", "1.0 MiB", "+1.0 MiB"]


def test_a_file_read_by_a_container_process_is_charged_to_the_container(tmp_path: Path):
    # the kernel's filemap rows carry no cgroup: the reader's page-cache charges name it
    a = native_recorder().write(tmp_path / "a.parquet")
    rec = docker_recorder()
    for row in rec.rows:
        if row["event"].startswith("filemap"):
            row["cgroup_id"] = None
    # another process of the run reads another file, charged to another cgroup at that moment
    rec.charge(2.05, NATIVE_CGROUP, "NR_FILE_PAGES", 64 * MIB, pid=555, comm="loader")
    rec.filemap(2.05, "/data/tokenizer.json", 64 * MIB, None, pid=555)
    d = build_diff(a, rec.write(tmp_path / "b.parquet"))
    # issue #8's sentence: file, container name, cgroup path, when
    assert d["conclusion"][0].startswith(
        "B's cuMemGetInfo free at the KV-sizing call was 23.5 GiB lower (60.0 GiB in A, "
        "36.5 GiB in B); 20.0 GiB of it is page cache of /weights.bin charged to container "
        "trt (/docker/3f2a9c0d11e7abab...) between 2.0 s and 2.4 s;"
    )
    files = {r["key"]: r["b_cgroup"] for r in d["decomposition"]["by_file"]}
    assert files == {"/weights.bin": "container trt", "/data/tokenizer.json": "cgroup 11"}
    rep = d["reports"]["b"]
    cgroups = {f["path"]: f["cgroup_id"] for f in rep["attribution"]["by_file"]}
    assert cgroups == {"/weights.bin": DOCKER_CGROUP, "/data/tokenizer.json": NATIVE_CGROUP}


def test_a_reader_without_a_page_cache_charge_nearby_gets_its_main_cgroup(tmp_path: Path):
    rec = Recorder(target_cgroups=[DOCKER_CGROUP])
    rec.charge(1.0, DOCKER_CGROUP, "NR_ANON_MAPPED", GIB)
    rec.charge(1.0, DOCKER_CGROUP, "NR_FILE_PAGES", GIB)
    rec.charge(9.0, 5, "NR_ANON_MAPPED", MIB)  # once elsewhere
    rec.filemap(5.0, "/models/weights.bin", GIB, None)  # 4 s from any page-cache charge
    (f,) = build_report(rec.write(tmp_path / "x.parquet"))["attribution"]["by_file"]
    assert (f["path"], f["cgroup_id"]) == ("/models/weights.bin", DOCKER_CGROUP)
