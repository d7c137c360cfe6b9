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

from tests.recordings import GIB, docker_recorder, native_recorder
from uvmtrace.analysis.render_json import load_schema, to_json
from uvmtrace.analysis.report import build_diff, build_report
from uvmtrace.analysis.tables import diff_tables

FREE_A, FREE_B = 60 * GIB, 36.5 * GIB
KV_A, KV_B = int(0.9 * FREE_A), int(0.9 * FREE_B)
B_PAGE_CACHE = 21 * GIB


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
