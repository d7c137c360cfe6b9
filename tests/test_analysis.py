"""Analysis of recordings with known content (tests/recordings.py): every number checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.recordings import (
    CONTAINER_ID,
    DOCKER_CGROUP,
    GIB,
    MIB,
    NATIVE_CGROUP,
    PID,
    Recorder,
    docker_run,
    native_run,
)
from uvmtrace.analysis.load import load_run
from uvmtrace.analysis.render_json import load_schema, to_json
from uvmtrace.analysis.report import build_diff, build_report
from uvmtrace.analysis.sizing import SIGNAL_MEMAVAILABLE
from uvmtrace.analysis.tables import diff_tables
from uvmtrace.recording.errors import RecordingError

FREE_B = 60 * GIB - 20 * GIB - 2 * GIB - 1 * GIB - GIB // 2  # docker's free at the query


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("runs")
    return native_run(d / "native.parquet"), docker_run(d / "docker.parquet")


@pytest.fixture(scope="module")
def docker_report(runs: tuple[Path, Path]) -> dict:
    return build_report(runs[1])


@pytest.fixture(scope="module")
def diff(runs: tuple[Path, Path]) -> dict:
    return build_diff(*runs)


def test_a_container_is_charged_its_page_cache_shmem_and_kernel_memory(docker_report: dict):
    att = docker_report["attribution"]
    (cg,) = att["by_cgroup"]
    assert cg["cgroup_id"] == DOCKER_CGROUP and cg["name"] == "container trt"
    assert cg["path"] == f"/docker/{CONTAINER_ID}"
    # anon 2 + file 21 + shmem 2 + kernel 1 by 2.7 s; 0.5 GiB anon freed at 4.5 s
    assert (cg["peak"], cg["peak_t_s"], cg["end"]) == (26 * GIB, 2.7, 25 * GIB + GIB // 2)
    assert cg["end_by_kind"] == {
        "file": 21 * GIB,
        "shmem": 2 * GIB,
        "kernel": GIB,
        "anon": 2 * GIB - GIB // 2,
    }
    kinds = {r["kind"]: (r["peak"], r["end"]) for r in att["by_kind"]}
    # NR_SHMEM is taken out of NR_FILE_PAGES: page cache is 21 GiB, not 23
    assert kinds == {
        "file": (21 * GIB, 21 * GIB),
        "shmem": (2 * GIB, 2 * GIB),
        "kernel": (GIB, GIB),
        "anon": (2 * GIB, 2 * GIB - GIB // 2),
    }
    items = {r["item"]: (r["end"], r["in_total"]) for r in att["by_item"]}
    assert items["NR_FILE_PAGES"] == (23 * GIB, True)
    assert items["NR_SLAB_UNRECLAIMABLE_B"] == (GIB, False)  # shown, never added to totals
    assert att["total"]["peak"] == 26 * GIB
    (proc,) = att["by_process"]
    assert (proc["pid"], proc["comm"], proc["peak"]) == (PID, "trtllm", 26 * GIB)
    (f,) = att["by_file"]
    assert (f["path"], f["cgroup"], f["peak"], f["end"]) == (
        "/weights.bin",
        "container trt",
        21 * GIB,
        21 * GIB,
    )
    assert (f["first_t_s"], f["last_t_s"]) == (2.0, 2.4)


def test_the_kv_cache_is_explained_as_0_9_of_the_free_memory_query(docker_report: dict):
    sizing = docker_report["sizing"]
    kv = sizing["kv"]
    assert kv["bytes"] == int(0.9 * FREE_B)
    assert (kv["signal"], kv["fraction"], kv["query_free_bytes"]) == ("cuMemGetInfo", 0.9, FREE_B)
    assert kv["rule"] == "fraction_of_free" and kv["residual_bytes"] <= 1
    # the kernel saw the same value through sysinfo()
    assert [(f["rule"], f["signal"], f["fraction"]) for f in kv["also_fits"]] == [
        ("fraction_of_free", "sysinfo", 0.9)
    ]
    assert (kv["t_s"], kv["query_t_s"]) == (3.1, 3.0)
    # the container's real headroom: limit 48 GiB - usage 26 GiB
    assert kv["headroom_bytes"] == 22 * GIB
    assert kv["mem_available_bytes"] == FREE_B + 21 * GIB
    sig = {s["signal"]: s for s in kv["signals"]}["cuMemGetInfo"]
    assert sig["minus_headroom"] == FREE_B - 22 * GIB
    assert sig["minus_mem_available"] == -21 * GIB
    what_if = {w["signal"]: w["kv_bytes"] for w in kv["what_if"]}
    assert what_if["cgroup headroom (at the allocation)"] == int(0.9 * 22 * GIB)
    assert docker_report["conclusion"][0].startswith(
        "The KV cache (32.8 GiB, cuMemAlloc by pid 100 at 3.1 s) was sized by cuMemGetInfo: "
        "0.9 x 36.5 GiB free at 3.0 s"
    )
    assert sizing["log_kv"]["bytes"] == kv["bytes"]


def test_an_unrelated_allocation_is_plainly_unexplained(docker_report: dict):
    other = [a for a in docker_report["sizing"]["allocations"] if not a["explained"]]
    assert [a["bytes"] for a in other] == [int(5.1234 * GIB)]
    assert other[0]["signal"] is None and other[0]["fraction"] is None
    assert (
        "1 other large allocation(s) are not explained by any query." in docker_report["conclusion"]
    )


def test_a_host_mmap_is_explained_by_a_meminfo_read(tmp_path: Path):
    rec = Recorder()
    rec.meminfo(0.0, MemFree=10 * GIB, MemAvailable=40 * GIB)
    rec.add(1.0, "kernel", "openat", pid=7, path="/proc/meminfo")
    rec.meminfo(1.0, MemFree=10 * GIB, MemAvailable=40 * GIB)
    rec.add(1.5, "kernel", "mmap", pid=7, bytes=int(0.85 * 40 * GIB), flags=0x22, result=1 << 40)
    rec.add(1.6, "kernel", "mmap", pid=7, bytes=int(3.3333 * GIB), flags=0x22, result=1 << 41)
    rep = build_report(rec.write(tmp_path / "host.parquet"))
    explained, unexplained = rep["sizing"]["allocations"]
    assert (explained["signal"], explained["fraction"]) == (SIGNAL_MEMAVAILABLE, 0.85)
    assert explained["source"] == "kernel"
    # 3.33 GiB is 0.333 x MemFree and 0.083 x MemAvailable: no fraction a framework uses
    assert unexplained["explained"] is False


def test_address_space_reserved_with_prot_none_is_not_an_allocation(tmp_path: Path):
    rec = Recorder()
    rec.meminfo(0.0, MemFree=10 * GIB, MemAvailable=40 * GIB)
    # A Go runtime's heap arena reservation (the docker client makes two of these), then memory.
    rec.add(0.5, "kernel", "mmap", pid=7, bytes=512 * MIB, flags=0x22, item="---p", result=1 << 40)
    rec.add(1.0, "kernel", "mmap", pid=7, bytes=1 * GIB, flags=0x22, item="rw-p", result=1 << 41)
    allocations = build_report(rec.write(tmp_path / "arena.parquet"))["sizing"]["allocations"]
    assert [a["bytes"] for a in allocations] == [1 * GIB]


def test_no_query_explains_an_allocation_without_a_matching_free(tmp_path: Path):
    rec = Recorder()
    rec.query(1.0, "cuMemGetInfo", free=50 * GIB)
    rec.alloc(2.0, "cuMemAlloc_v2", int(0.4321 * 50 * GIB), addr=1)
    rep = build_report(rec.write(tmp_path / "x.parquet"))
    assert rep["sizing"]["kv"] is None
    assert rep["conclusion"][0].startswith(
        "No memory query explains any of the 1 large allocation(s)"
    )


def test_diff_decomposes_the_lower_free_memory_into_charges_and_a_rest(diff: dict):
    dec = diff["decomposition"]
    assert dec["at"] == "sizing_query"
    assert dec["signal_difference_bytes"] == 60 * GIB - FREE_B == 23 * GIB + GIB // 2
    assert {k["key"]: k["difference"] for k in dec["by_kind"]} == {
        "file": 20 * GIB,
        "shmem": 2 * GIB,
        "kernel": GIB,
    }
    assert dec["baseline_bytes"] == 0  # both hosts started with 80 GiB MemFree
    assert dec["explained_bytes"] == 23 * GIB
    assert dec["unexplained_bytes"] == GIB // 2
    (f,) = dec["by_file"]
    assert (f["key"], f["a_bytes"], f["b_bytes"], f["difference"]) == (
        "/weights.bin",
        GIB,
        21 * GIB,
        20 * GIB,
    )
    assert (f["b_cgroup"], f["b_first_t_s"], f["b_last_t_s"]) == ("container trt", 2.0, 2.4)
    cgroups = {r["key"]: r["difference"] for r in dec["by_cgroup"]}
    assert cgroups == {"container trt": 26 * GIB, "/user.slice/bench.scope": -3 * GIB}
    assert sum(cgroups.values()) == dec["charged_difference_bytes"]
    assert diff["conclusion"][0] == (
        "B's cuMemGetInfo free at the KV-sizing call was 23.5 GiB lower (60.0 GiB in A, "
        "36.5 GiB in B); 20.0 GiB of it is page cache of /weights.bin charged to container "
        "trt (/docker/3f2a9c0d11e7abab...) between 2.0 s and 2.4 s; +3.0 GiB other charges "
        "(shmem/tmpfs +2.0 GiB, kernel memory +1.0 GiB); 512.0 MiB unexplained."
    )


def test_diff_reports_kv_peak_and_end_differences(diff: dict):
    kv = diff["kv"]
    assert (kv["a_bytes"], kv["b_bytes"]) == (int(0.9 * 60 * GIB), int(0.9 * FREE_B))
    assert kv["a_log_bytes"] == kv["a_bytes"] and kv["b_log_bytes"] == kv["b_bytes"]
    total = diff["peak_end"][0]
    assert (total["a_peak"], total["b_peak"], total["peak_difference"]) == (
        3 * GIB,
        26 * GIB,
        23 * GIB,
    )
    assert total["end_difference"] == 23 * GIB
    assert diff["unmatched_phases"] == []


def test_reconciliation_agrees_with_memory_stat_and_proc(docker_report: dict):
    rc = docker_report["reconciliation"]
    rows = {r["key"]: r for r in rc["memcg"]}
    assert rows["cache"]["stat_delta"] == rows["cache"]["traced_delta"] == 23 * GIB
    assert rows["rss"]["difference"] == 0 and not rows["rss"]["hierarchical"]
    assert rc["faults"] == [
        {"pid": PID, "traced_faults": 500, "pinned_faults": 0, "proc_faults": 500, "exact": True}
    ]
    assert rc["summary"]["trust"] == "high"
    assert docker_report["conclusion"][-1].startswith(
        "Trust: high — eBPF charges match memory.stat to 100%"
    )


def test_untraced_charges_and_lost_events_lower_the_trust(tmp_path: Path):
    rec = Recorder(lost={"memcg": 1200})
    rec.memory_stat(0.0, NATIVE_CGROUP, anon=0, file=0)
    rec.charge(1.0, NATIVE_CGROUP, "NR_ANON_MAPPED", 600 * MIB)
    rec.charge(1.0, NATIVE_CGROUP + 1, "NR_FILE_PAGES", 100 * MIB)  # a child: v2 counts it
    rec.memory_stat(2.0, NATIVE_CGROUP, anon=1000 * MIB, file=100 * MIB)
    rec.metadata["cgroups"] = {
        str(NATIVE_CGROUP): {"path": "/app"},
        str(NATIVE_CGROUP + 1): {"path": "/app/worker"},
    }
    rep = build_report(rec.write(tmp_path / "lossy.parquet"))
    rc = rep["reconciliation"]
    rows = {r["key"]: r for r in rc["memcg"]}
    assert rows["anon"]["difference"] == -400 * MIB and rows["anon"]["hierarchical"]
    assert rows["file"]["difference"] == 0
    assert rc["summary"]["memcg_agreement"] == pytest.approx(1 - 400 / 1100)
    assert rc["summary"]["trust"] == "low" and rc["summary"]["lost_events"] == 1200
    assert "1200 events lost" in rep["conclusion"][-1]


def test_nested_skips_are_shown_but_do_not_count_as_losses(tmp_path: Path):
    rec = Recorder(lost={"memcg": 0, "memcg_nested": 37})
    rec.memory_stat(0.0, NATIVE_CGROUP, anon=0, file=0)
    rec.charge(1.0, NATIVE_CGROUP, "NR_ANON_MAPPED", 600 * MIB)
    rec.memory_stat(2.0, NATIVE_CGROUP, anon=600 * MIB, file=0)
    rep = build_report(rec.write(tmp_path / "nested.parquet"))
    summary = rep["reconciliation"]["summary"]
    assert summary["lost_events"] == 0 and summary["nested_skips"] == 37
    assert summary["trust"] == "high"
    assert "37 host-wide updates skipped by the kernel (nested)" in rep["conclusion"][-1]


def test_a_recording_without_kernel_stream_degrades(tmp_path: Path, runs: tuple[Path, Path]):
    rec = Recorder()
    rec.query(1.0, "cuMemGetInfo", free=10 * GIB)
    rec.alloc(1.1, "cuMemAlloc", 9 * GIB, addr=1)
    rep = build_report(rec.write(tmp_path / "cuda-only.parquet"))
    assert rep["sizing"]["kv"]["fraction"] == 0.9
    assert any("no kernel stream" in line for line in rep["conclusion"])
    assert rep["attribution"]["by_cgroup"] == []
    d = build_diff(runs[0], tmp_path / "cuda-only.parquet")
    assert "first_cuda_call" not in d["unmatched_phases"]
    assert d["unmatched_phases"] == []  # start, cuda, sizing, kv and end exist in both


def test_unmatched_phases_are_named(tmp_path: Path, runs: tuple[Path, Path]):
    rec = Recorder()
    rec.charge(1.0, NATIVE_CGROUP, "NR_ANON_MAPPED", GIB)
    d = build_diff(runs[0], rec.write(tmp_path / "no-cuda.parquet"))
    assert d["unmatched_phases"] == ["first_cuda_call", "sizing_query", "kv_allocation"]
    assert d["decomposition"]["at"] == "end"
    assert (
        "Phases that could not be matched: first_cuda_call, sizing_query, kv_allocation."
        in (d["conclusion"])
    )


def test_bad_input_is_one_line(tmp_path: Path, runs: tuple[Path, Path]):
    junk = tmp_path / "junk.parquet"
    junk.write_text("hello")
    truncated = tmp_path / "cut.parquet"
    truncated.write_bytes(runs[0].read_bytes()[:-100])
    for path, msg in ((junk, "not a Parquet file"), (truncated, "truncated")):
        with pytest.raises(RecordingError, match=msg):
            load_run(path)
        r = subprocess.run(
            [sys.executable, "-m", "uvmtrace.cli", "diff", str(runs[0]), str(path)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2
        assert r.stderr.count("\n") == 1 and msg in r.stderr and "Traceback" not in r.stderr


def test_json_validates_against_the_schema(docker_report: dict, diff: dict):
    validator = jsonschema.Draft202012Validator(load_schema())
    for doc in (docker_report, diff):
        validator.validate(json.loads(to_json(doc)))


def test_cli_writes_every_format(tmp_path: Path, runs: tuple[Path, Path]):
    md, html, js = tmp_path / "d.md", tmp_path / "d.html", tmp_path / "d.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "uvmtrace.cli",
            "diff",
            *map(str, runs),
            "--markdown",
            str(md),
            "--html",
            str(html),
            "--json-out",
            str(js),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("B's cuMemGetInfo free at the KV-sizing call was 23.5 GiB lower")
    assert md.read_text().splitlines()[2].startswith("B's cuMemGetInfo free")
    assert "<svg" in html.read_text()
    assert json.loads(js.read_text())["kind"] == "diff"
    r = subprocess.run(
        [sys.executable, "-m", "uvmtrace.cli", "report", str(runs[1]), "--json"],
        capture_output=True,
        text=True,
    )
    assert json.loads(r.stdout)["sizing"]["kv"]["fraction"] == 0.9


def test_flags_go_before_or_after_the_recordings(runs: tuple[Path, Path]):
    uvmtrace = [sys.executable, "-m", "uvmtrace.cli"]
    a, b = map(str, runs)
    for argv in (["diff", "--json", a, b], ["diff", a, "--json", b], ["report", "--json", b]):
        r = subprocess.run([*uvmtrace, *argv], capture_output=True, text=True)
        assert r.returncode == 0, (argv, r.stderr)
        assert json.loads(r.stdout)["kind"] == argv[0]


@pytest.mark.parametrize("reader", ["head -1", "true"])  # true: closed before the first line
def test_a_report_piped_into_a_reader_that_stops_early_exits_zero(
    runs: tuple[Path, Path], reader: str
):
    r = subprocess.run(
        f"{sys.executable} -m uvmtrace.cli report '{runs[1]}' | {reader}; "
        'echo "exit=${PIPESTATUS[0]}"',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
    )
    assert r.stdout.splitlines()[-1] == "exit=0", r.stderr
    assert r.stderr == ""


def _sized_after_reading_weights(path: Path, gpu_unified: bool, signal: str) -> dict:
    rec = Recorder(target_cgroups=[NATIVE_CGROUP], gpu={"unified_memory": gpu_unified})
    rec.metadata["cgroups"] = {str(NATIVE_CGROUP): {"path": "/app", "target": True}}
    rec.charge(0.5, NATIVE_CGROUP, "NR_FILE_PAGES", 20 * GIB)  # the weights, read from disk
    rec.charge(0.6, NATIVE_CGROUP, "NR_ANON_MAPPED", 5 * GIB)
    rec.query(1.0, signal, free=40 * GIB)
    rec.alloc(1.1, "cuMemAlloc", int(0.9 * 40 * GIB), addr=1)
    return build_report(rec.write(path))["sizing"]["kv"]


def test_what_if_the_command_s_own_page_cache_had_been_dropped_before_sizing(tmp_path: Path):
    kv = _sized_after_reading_weights(tmp_path / "u.parquet", gpu_unified=True, signal="sysinfo")
    what_if = {w["signal"]: w for w in kv["what_if"]}
    dropped = what_if["sysinfo + the command's own page cache, dropped before sizing"]
    assert dropped["value_bytes"] == 60 * GIB  # 40 free + 20 of its own page cache
    assert dropped["kv_bytes"] == int(0.9 * 60 * GIB)


def test_no_page_cache_what_if_for_a_discrete_gpu_signal(tmp_path: Path):
    kv = _sized_after_reading_weights(tmp_path / "d.parquet", False, signal="cuMemGetInfo")
    assert kv["signal"] == "cuMemGetInfo"
    assert not any("page cache" in w["signal"] for w in kv["what_if"])


def test_a_proc_reading_taken_while_running_bounds_the_faults_but_is_not_compared(tmp_path: Path):
    rec = Recorder()
    rec.memory_stat(0.0, NATIVE_CGROUP, anon=0, file=0)
    rec.charge(1.0, NATIVE_CGROUP, "NR_ANON_MAPPED", 600 * MIB)
    rec.memory_stat(2.0, NATIVE_CGROUP, anon=600 * MIB, file=0)
    rec.fault(1.0, 500)  # the launched command, read at exit: exact
    rec.add(3.0, "proc", "proc_faults", pid=PID, item="minflt", count=500, text="at exit")
    rec.fault(1.0, 30_000, pid=PID + 1)  # a container's process: its last reading came earlier
    rec.add(3.0, "proc", "proc_faults", pid=PID + 1, item="minflt", count=27_000,
            text="while running")  # fmt: skip
    rc = build_report(rec.write(tmp_path / "f.parquet"))["reconciliation"]
    rows = {r["pid"]: r for r in rc["faults"]}
    assert rows[PID]["exact"] and not rows[PID + 1]["exact"]
    assert rc["summary"]["fault_share"] == 1.0  # only the exact reading is compared


def _vllm_or_sglang(command: list[str], tmp_path: Path) -> dict:
    """12 GiB held (weights + activations), then free = 88 of 100 GiB: a 48 GiB KV cache in 8
    per-layer tensors is vLLM's 0.6 x total - used and SGLang's free - 0.4 x total alike."""
    rec = Recorder(command=command)
    rec.alloc(1.0, "cuMemAlloc_v2", 12 * GIB, addr=1)
    rec.query(2.0, "cuMemGetInfo", free=88 * GIB, total=100 * GIB)
    for layer in range(8):
        rec.alloc(2.001 + layer / 1000, "cuMemAlloc_v2", 6 * GIB, addr=100 + layer)
    return build_report(rec.write(tmp_path / "kv.parquet"))["sizing"]


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        (["vllm", "serve", "model"], "fraction_of_total_minus_used"),
        (["python", "-m", "sglang.launch_server"], "free_minus_fraction_of_total"),
    ],
)
def test_a_tie_between_rules_goes_to_the_framework_the_command_names(
    command: list[str], rule: str, tmp_path: Path
):
    sizing = _vllm_or_sglang(command, tmp_path)
    kv = sizing["kv"]
    assert (kv["rule"], kv["fraction"], kv["bytes"], kv["allocations"]) == (rule, 0.6, 48 * GIB, 8)
    assert kv["residual_bytes"] == 0 and kv["used_bytes"] == 12 * GIB
    (other,) = kv["also_fits"]
    assert other["rule"] != rule and other["residual_bytes"] == 0
    assert kv["what"] == "KV cache"  # the known rule of the framework the command names


def test_without_a_framework_a_tie_goes_to_the_simpler_rule_and_no_kv_cache_is_named(
    tmp_path: Path,
):
    kv = _vllm_or_sglang(["python", "serve.py"], tmp_path)["kv"]
    assert kv["rule"] == "fraction_of_total_minus_used"
    assert kv["what"] == "large allocation"


def test_an_unknown_rule_is_said_with_the_nearest_candidates(tmp_path: Path):
    rec = Recorder()
    rec.query(1.0, "cuMemGetInfo", free=50 * GIB, total=80 * GIB)
    rec.alloc(2.0, "cuMemAlloc_v2", int(0.4321 * 50 * GIB), addr=1)
    sizing = build_report(rec.write(tmp_path / "x.parquet"))["sizing"]
    assert sizing["kv"] is None
    unknown = sizing["unknown"]
    assert unknown["rule"] == "unknown" and unknown["bytes"] == int(0.4321 * 50 * GIB)
    # 21.6 GiB: free - (1 - 0.645) x total is nearest (0.395 GiB off 0.65), then 0.432 x free
    # (0.895 GiB off 0.45), then 0.27 x total (1.6 GiB off 0.25): none within 0.003
    assert [(n["rule"], n["fraction"]) for n in unknown["nearest"]] == [
        ("free_minus_fraction_of_total", 0.65),
        ("fraction_of_free", 0.45),
        ("fraction_of_total", 0.25),
    ]
    assert unknown["nearest"][0]["residual_bytes"] == pytest.approx(0.395 * GIB, rel=0.01)
    assert "nearest for the largest" in build_report(tmp_path / "x.parquet")["conclusion"][0]


def test_diff_compares_a_removed_container_cgroup_at_its_last_living_moment(tmp_path: Path):
    def run(path: Path, cgroup: int, removed_at: float | None) -> Path:
        rec = Recorder(target_cgroups=[cgroup, 99])
        rec.metadata["cgroups"] = {str(cgroup): {"path": "/docker/app"}, "99": {"path": "/u"}}
        rec.charge(1.0, cgroup, "NR_ANON_MAPPED", 2 * GIB)
        rec.charge(4.0, cgroup, "NR_ANON_MAPPED", -2 * GIB)  # the container's exit
        for t in (0.5, 2.0, 3.0, 5.0):
            rec.memory_stat(t, 99, rss=0)
            if removed_at is None or t <= removed_at:  # `docker run --rm`: its cgroup is gone
                rec.memory_stat(t, cgroup, rss=2 * GIB if 1.0 < t < 4.0 else 0)
        return rec.write(path)

    a = run(tmp_path / "a.parquet", 11, removed_at=None)
    b = run(tmp_path / "b.parquet", 22, removed_at=3.0)
    d = build_diff(a, b)
    (row,) = [r for r in d["decomposition"]["by_cgroup"] if r["key"] == "/docker/app"]
    assert d["decomposition"]["at"] == "end"
    assert (row["a_bytes"], row["b_bytes"]) == (0, 2 * GIB)  # A at the end, B as it last lived
    assert row["b_removed_t_s"] is not None and "a_removed_t_s" not in row
    assert "removed; at its last sample: B" in " ".join(
        str(cell) for _t, _h, rows in diff_tables(d) for r in rows for cell in r
    )
