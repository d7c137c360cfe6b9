"""Advice after the decomposition: which action would have given the container the KV size the
native run got, with the bytes each recovers as the recordings measured them.

The story (tests/recordings.py): both runs size 0.9 x 60 GiB-minus-what-is-held; the container
also holds 20 GiB more page cache of /weights.bin (21 GiB in all), 2 GiB shmem, 1 GiB kernel
memory, and 0.5 GiB went outside the traced cgroups. KV: A 54 GiB, B 32.85 GiB.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.recordings import (
    CONTAINER_ID,
    DOCKER_CGROUP,
    GIB,
    PID,
    Recorder,
    docker_recorder,
    native_recorder,
)
from uvmtrace.analysis.render_json import load_schema, to_json
from uvmtrace.analysis.report import build_diff, build_report
from uvmtrace.analysis.tables import diff_tables, report_tables

FREE_A, FREE_B = 60 * GIB, 36.5 * GIB
KV_A, KV_B = int(0.9 * FREE_A), int(0.9 * FREE_B)
B_PAGE_CACHE = 21 * GIB
MIB = 1 << 20


@pytest.fixture(scope="module")
def diff(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("advice")
    a = native_recorder().write(d / "native.parquet")
    b = docker_recorder().write(d / "docker.parquet")
    return build_diff(a, b)


def _by_kind(diff: dict) -> dict[str, dict]:
    return {a["kind"]: a for a in diff["advice"]["actions"]}


def test_the_gap_is_the_kv_sizes_a_and_b_got(diff: dict) -> None:
    assert abs(diff["advice"]["gap_bytes"] - (KV_A - KV_B)) <= 1 << 20


def test_reclaiming_the_named_file_ranks_first_with_what_b_held_of_it(diff: dict) -> None:
    first = diff["advice"]["actions"][0]
    assert first["kind"] == "reclaim" and first["risk"] == "none"
    assert first["files"] == ["/weights.bin"]
    assert first["recovers_bytes"] == B_PAGE_CACHE
    assert abs(first["kv_bytes"] - (KV_B + 0.9 * B_PAGE_CACHE)) <= 1 << 20
    # what stays: shmem, kernel memory and the untraced half GiB, times the fraction
    assert first["gap_closed"] == pytest.approx(0.9 * 21 / (0.9 * 23.5), abs=0.01)
    assert first["command"].startswith("sudo uvmtrace record --reclaim-before-sizing -o ")
    assert first["command"].endswith("docker run --rm trt trtllm-bench throughput")


def test_other_signals_come_from_the_what_if_table_with_their_risk(diff: dict) -> None:
    signals = [a for a in diff["advice"]["actions"] if a["kind"] == "signal"]
    names = [a["action"] for a in signals]
    assert any("honest headroom" in n for n in names)
    mem_available = next(a for a in signals if "MemAvailable" in a["action"])
    assert mem_available["risk"] == "high"
    assert mem_available["recovers_bytes"] == 21 * GIB  # MemAvailable - free at the query
    # the cgroup's limit - usage (48 - 26 GiB) is below what B's signal said: not advice
    assert not any("cgroup headroom" in n for n in names)


def test_no_fraction_reaches_a_s_size_so_the_setting_is_high_risk(diff: dict) -> None:
    setting = _by_kind(diff)["setting"]
    assert setting["risk"] == "high"
    assert setting["kv_bytes"] == int(FREE_B)  # at most all of what the signal said
    assert "--kv_cache_free_gpu_mem_fraction 1.000" in setting["command"]


def test_the_safest_action_that_closes_most_of_the_gap_ranks_first(diff: dict) -> None:
    actions = diff["advice"]["actions"]
    assert [a["rank"] for a in actions] == list(range(1, len(actions) + 1))
    assert [(a["kind"], a["risk"]) for a in actions] == [
        ("reclaim", "none"),
        ("signal", "low"),  # the honest headroom
        ("signal", "high"),  # MemAvailable
        ("setting", "high"),  # closes 17% only
    ]


def test_the_conclusion_and_the_tables_carry_the_safe_fix(diff: dict) -> None:
    fix = next(line for line in diff["conclusion"] if line.startswith("Fix: "))
    assert "reclaim the clean page cache of /weights.bin" in fix and "risk none" in fix
    table = next(t for t in diff_tables(diff) if t[0].startswith("Advice"))
    assert table[2][0][0].startswith("1. reclaim")
    jsonschema.Draft202012Validator(load_schema()).validate(json.loads(to_json(diff)))


def test_a_report_advises_too_without_a_target(tmp_path: Path) -> None:
    rep = build_report(docker_recorder().write(tmp_path / "docker.parquet"))
    kinds = [a["kind"] for a in rep["advice"]["actions"]]
    assert kinds[0] == "reclaim" and rep["advice"]["gap_bytes"] is None
    assert all(a["gap_closed"] is None for a in rep["advice"]["actions"])
    assert rep["reclaim"] is None  # not recorded with --reclaim-before-sizing
    jsonschema.Draft202012Validator(load_schema()).validate(json.loads(to_json(rep)))


def test_without_a_gap_what_held_b_s_signal_down_is_still_advised(tmp_path: Path) -> None:
    # Reversed: B (native) got more than A; host memory moving between two runs does this to a
    # small real gap. Native still held 1 GiB of /weights.bin when it asked.
    a = docker_recorder().write(tmp_path / "docker.parquet")
    b = native_recorder().write(tmp_path / "native.parquet")
    advice = build_diff(a, b)["advice"]
    assert advice["gap_bytes"] < 0 and "at least A's KV size" in advice["why"]
    reclaim = next(x for x in advice["actions"] if x["kind"] == "reclaim")
    assert reclaim["files"] == ["/weights.bin"] and reclaim["recovers_bytes"] == GIB
    assert all(x["gap_closed"] is None for x in advice["actions"])
    assert not any(x["kind"] == "setting" for x in advice["actions"])


def _limited_container(limit: int) -> Recorder:
    """The demo's story under `docker run --memory`: the container reads 1 GiB of weights
    (page cache charged to it), copies them into 1 GiB of anonymous memory, asks sysinfo
    (20 GiB free) and maps 0.1 x that as its KV cache; under the limit the kernel has taken
    most of the weights' clean page cache back by the end."""
    rec = Recorder(
        command=["docker", "run", "--rm", "--memory", str(limit), "srv", "kvsizer"],
        cgroups={str(DOCKER_CGROUP): {"path": f"/docker/{CONTAINER_ID}", "hierarchy": "memory",
                                      "container_id": CONTAINER_ID, "container_name": "srv"}},
        target_cgroups=[DOCKER_CGROUP],
    )  # fmt: skip
    cg, kv = DOCKER_CGROUP, 2 * GIB
    rec.add(0.0, "proc", "exec", pid=PID, tid=PID, text="/usr/bin/python3 kvsizer.py", comm="py")
    rec.meminfo(0.0, MemFree=22 * GIB, MemAvailable=23 * GIB)
    rec.current_and_limit(0.0, cg, current=0, limit=limit)
    rec.charge(1.0, cg, "NR_FILE_PAGES", GIB).filemap(1.0, "/models/weights.bin", GIB, cg)
    rec.charge(1.5, cg, "NR_ANON_MAPPED", GIB)
    rec.query(2.0, "sysinfo", free=20 * GIB)
    rec.meminfo(2.0, MemFree=20 * GIB, MemAvailable=21 * GIB)
    clean = {"total_active_file": 0, "total_mapped_file": 0, "total_dirty": 0, "total_writeback": 0}
    rec.memory_stat(2.0, cg, total_cache=GIB, total_rss=GIB, total_inactive_file=GIB, **clean)
    rec.current_and_limit(2.0, cg, current=2 * GIB + 16 * MIB, limit=limit)
    rec.mapping(2.1, PID, kv)
    rec.charge(2.5, cg, "NR_ANON_MAPPED", kv)
    rec.memory_stat(
        3.0, cg, total_cache=64 * MIB, total_rss=3 * GIB, total_inactive_file=64 * MIB, **clean
    )
    rec.current_and_limit(3.0, cg, current=3 * GIB + 80 * MIB, limit=limit)
    rec.add(3.5, "proc", "exit", pid=PID, result=0)
    return rec


def test_a_fix_whose_larger_kv_would_not_fit_under_the_container_limit_says_what_limit_it_needs(
    tmp_path: Path,
) -> None:
    # Held at the peak and not reclaimable: 3 GiB + 16 MiB (weights copy, KV, interpreter).
    # Reclaiming the weights' 1 GiB gives a KV 0.1 GiB larger: 3.1 GiB + 16 MiB are needed.
    limit = 3 * GIB + 64 * MIB
    rep = build_report(_limited_container(limit).write(tmp_path / "tight.parquet"))
    lim = rep["sizing"]["kv"]["memory_limit"]
    assert lim["limit_bytes"] == limit and lim["reclaimable_at_query_bytes"] == GIB
    assert lim["peak_held_bytes"] == 3 * GIB + 16 * MIB
    reclaim = next(a for a in rep["advice"]["actions"] if a["kind"] == "reclaim")
    assert reclaim["kv_bytes"] == int(2 * GIB + 0.1 * GIB)
    need = 3 * GIB + 16 * MIB + int(0.1 * GIB)
    assert reclaim["memory_limit"] == {
        "cgroup": "container srv", "limit_bytes": limit, "needs_bytes": need, "fits": False
    }  # fmt: skip
    assert f"--memory {-(-need // MIB)}m" in reclaim["warning"]
    assert "OOM-killed" in reclaim["warning"]
    fix = next(line for line in rep["conclusion"] if line.startswith("Fix: "))
    assert "Warning: " in fix and f"--memory {-(-need // MIB)}m" in fix
    table = next(t for t in report_tables(rep) if t[0].startswith("Advice"))
    assert any("DOES NOT FIT" in cell for row in table[2] for cell in row)
    jsonschema.Draft202012Validator(load_schema()).validate(json.loads(to_json(rep)))

    # With room for it (4 GiB), the same fix fits: no warning.
    roomy = build_report(_limited_container(4 * GIB).write(tmp_path / "roomy.parquet"))
    reclaim = next(a for a in roomy["advice"]["actions"] if a["kind"] == "reclaim")
    assert reclaim["memory_limit"]["fits"] and "warning" not in reclaim


def test_without_a_memory_limit_no_limit_is_checked(diff: dict) -> None:
    # the docker story's KV is device memory (cuMemAlloc): never charged to the cgroup
    assert diff["reports"]["b"]["sizing"]["kv"]["memory_limit"] is None
    assert all("memory_limit" not in a for a in diff["advice"]["actions"])


def test_a_file_mapped_by_a_live_process_is_not_advised_for_reclaim(tmp_path: Path) -> None:
    # The docker client's own binary, faulted in while it runs: charged to the container's
    # cgroup like the weights, but mapped until the client exits, so it cannot be dropped.
    rec = docker_recorder()
    rec.add(0.5, "proc", "exec", pid=4242, tid=4242, text="/usr/bin/docker", comm="docker")
    rec.charge(1.5, DOCKER_CGROUP, "NR_FILE_PAGES", 64 << 20)
    rec.filemap(1.5, "/usr/bin/docker", 64 << 20, DOCKER_CGROUP, pid=4242)
    b = rec.write(tmp_path / "docker.parquet")
    a = native_recorder().write(tmp_path / "native.parquet")
    d = build_diff(a, b)
    docker_file = next(f for f in d["decomposition"]["by_file"] if f["key"] == "/usr/bin/docker")
    assert docker_file["b_in_scope"] and docker_file["b_mapped"]
    reclaim = next(x for x in d["advice"]["actions"] if x["kind"] == "reclaim")
    assert reclaim["files"] == ["/weights.bin"] and reclaim["recovers_bytes"] == B_PAGE_CACHE
