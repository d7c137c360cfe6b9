"""The one-command demo, reduced (256 MiB of weights): native vs Docker, recorded and diffed,
each also with the fix, in two interleaved rounds.

What the workload says about itself (its result line: free memory seen, KV bytes, weights and
activation bytes) is the reference the diff's numbers are checked against. On a shared machine
the host's MemFree drifts between runs by more than the quick demo's gap, so nothing here
depends on the size of the gap: only on what each run's own recording and counters say.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import _need, docker_ok, has_bpf

from uvmtrace.example.kvsizer import MIB
from uvmtrace.example.run import DemoOptions, DemoOutcome, Run, run_demo

VARIANTS = ["native", "docker", "native-reclaim", "docker-reclaim"]

pytestmark = [pytest.mark.root, pytest.mark.bpf, pytest.mark.docker]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoOutcome, Path]:
    import os

    _need(os.geteuid() == 0, "needs root", ci_must_have=True)
    _need(has_bpf(), "needs root, BCC and tracefs (run scripts/setup-host)", ci_must_have=True)
    _need(docker_ok(), "needs a running Docker daemon", ci_must_have=True)
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    outcome = run_demo(
        DemoOptions(
            out=out,
            weights_size=256 * MIB,
            quick=True,
            reclaim_before_sizing=True,
            repeats=2,
            echo=lines.append,
        )
    )
    if outcome.diff is None and any("not built yet" in line for line in lines):
        pytest.skip("`uvmtrace diff` is not built yet")
    return outcome, out


def _row(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next(r for r in rows if r["key"] == key)


def test_the_demo_writes_both_recordings_and_the_report(demo) -> None:
    outcome, out = demo
    assert outcome.mode == "docker"
    for name in ("native.parquet", "docker.parquet", "report.html"):
        assert (out / name).stat().st_size > 0, name
    # Every run starts from the same page-cache state: host copy cached, image copy not.
    for run in outcome.runs:
        assert run.state["host copy"] == 256 * MIB
        assert run.state["image copy"] == 0
        assert run.result is not None and run.result.kv_decided_by == "signal"


def test_the_runs_are_interleaved_rounds_and_the_diff_takes_the_median_runs(demo) -> None:
    outcome, out = demo
    order = [(r.name, r.repeat) for r in outcome.runs]
    assert order == [(v, 1) for v in VARIANTS] + [(v, 2) for v in reversed(VARIANTS)]
    assert [r.order for r in outcome.runs] == list(range(1, 9))
    for run in outcome.runs:
        assert run.recording.name == (f"{run.name}.parquet" if run.repeat == 1
                                      else f"{run.name}-2.parquet")  # fmt: skip
        assert run.recording.stat().st_size > 0 and run.exit_code == 0
    diff = json.loads((out / "diff.json").read_text())
    for side, variant in (("a", "native"), ("b", "docker")):
        assert Path(diff[side]["path"]).name == _median(outcome, variant).recording.name


def _median(outcome: DemoOutcome, variant: str) -> Run:
    run = outcome.median(variant)
    assert run is not None and run.result is not None
    return run


def test_the_diff_agrees_with_what_the_workload_says_it_saw_and_allocated(demo) -> None:
    outcome, _ = demo
    native, docker = (_median(outcome, v).result for v in ("native", "docker"))
    assert native is not None and docker is not None and outcome.diff is not None
    d = outcome.diff
    # The sizing query the diff found is the workload's own sysinfo() call, with its value.
    assert d["signal"]["a_signal"] == d["signal"]["b_signal"] == "sysinfo"
    assert d["signal"]["a_free_bytes"] == native.free_bytes
    assert d["signal"]["b_free_bytes"] == docker.free_bytes
    # The KV allocation the diff traced is the one the workload made, to the byte.
    assert d["kv"]["a_bytes"] == native.kv_bytes
    assert d["kv"]["b_bytes"] == docker.kv_bytes
    assert d["kv"]["a_fraction"] == d["kv"]["b_fraction"] == native.fraction


def test_the_container_is_charged_the_page_cache_of_the_image_s_copy(demo) -> None:
    outcome, _ = demo
    native, docker = (_median(outcome, v).result for v in ("native", "docker"))
    assert native is not None and docker is not None and outcome.diff is not None
    dec = outcome.diff["decomposition"]
    weights, act = docker.weights_bytes, docker.activation_bytes
    # At the sizing query, each run's cgroup holds at least what the workload touched; the
    # container also holds the page cache of the weights it read (a cold copy).
    container = next(r for r in dec["by_cgroup"] if r["key"].startswith("container "))
    own = next(r for r in dec["by_cgroup"] if r["a_bytes"] > 0 and "uvmtrace-" in r["key"])
    assert own["a_bytes"] >= native.weights_bytes + act
    assert container["b_bytes"] >= 2 * weights + act
    # By kind, the extra page cache of B is the weights file, within 10%.
    page_cache = _row(dec["by_kind"], "file")
    assert abs(page_cache["difference"] - weights) <= 0.1 * weights
    # By file: the image's copy of the weights, charged in B only.
    files = [r for r in dec["by_file"] if r["key"] and r["key"].endswith("weights.bin")]
    assert files, "the weights' page cache is not attributed to a file"
    assert abs(files[0]["difference"] - weights) <= 0.1 * weights


def test_summary_json_has_each_variant_s_median_and_every_repeat(demo) -> None:
    outcome, out = demo
    doc = json.loads((out / "summary.json").read_text())
    summary = doc["runs"]
    assert set(summary) == set(VARIANTS)
    for variant in VARIANTS:
        runs = sorted((r for r in outcome.runs if r.name == variant), key=lambda r: r.repeat)
        entries = summary[variant]["repeats"]
        assert [e["recording"] for e in entries] == [r.recording.name for r in runs]
        for entry, run in zip(entries, runs, strict=True):
            res = run.result
            assert res is not None
            assert entry["kv_bytes"] == res.kv_bytes
            assert entry["signal"] == "sysinfo" and entry["signal_bytes"] == res.free_bytes
            assert entry["reclaimed_bytes"] == run.reclaimed_bytes
            assert entry["host_mem_free_before"] > 0
        median = _median(outcome, variant)
        assert summary[variant]["kv_bytes"] == median.result.kv_bytes
        assert summary[variant]["recording"] == median.recording.name
    # the relative KV differences of the medians, as the fix is judged
    cmp = doc["comparison"]
    kv = {v: summary[v]["kv_bytes"] for v in VARIANTS}
    assert cmp["docker-reclaim_vs_native-reclaim"] == pytest.approx(
        kv["docker-reclaim"] / kv["native-reclaim"] - 1, abs=1e-6
    )
    assert set(cmp) == {"docker_vs_native", "docker-reclaim_vs_native-reclaim",
                        "native-reclaim_vs_native", "docker-reclaim_vs_docker"}  # fmt: skip


def test_the_fix_drops_the_image_copy_s_cache_and_nothing_of_the_native_run(demo) -> None:
    outcome, _ = demo
    weights = 256 * MIB
    for run in outcome.runs:
        if run.name == "native-reclaim":
            # native reads the host's copy, cached before it started (charged elsewhere): only
            # what its own reads brought back in (pages evicted meanwhile by a busy host) may
            # go, never more
            native = pl.read_parquet(run.recording)
            brought_in = native.filter(pl.col("event") == "filemap_add")["bytes"].sum()
            assert run.reclaimed_bytes <= brought_in + 4 * MIB
        elif run.name == "docker-reclaim":
            # the container read the image's copy, cold: all of it is dropped before it asks
            assert abs(run.reclaimed_bytes - weights) <= 0.05 * weights
            # the recording marks it: bytes, time taken, and MemFree right after
            df = pl.read_parquet(run.recording)
            rows = df.filter((pl.col("event") == "reclaim") & (pl.col("bytes") > 0)).to_dicts()
            assert rows[-1]["bytes"] == run.reclaimed_bytes
            assert 0 < rows[-1]["dur_ns"] < 5_000_000_000 and rows[-1]["free_bytes"] > 0
        else:
            assert run.reclaimed_bytes == 0 and not run.reclaim


def test_the_diff_advises_reclaiming_the_image_s_weights(demo) -> None:
    outcome, _ = demo
    assert outcome.diff is not None
    # Its rank depends on the gap, which host-wide MemFree drift on a shared machine moves too;
    # the action itself, its file and the bytes it recovers do not.
    actions = outcome.diff["advice"]["actions"]
    reclaim = next(a for a in actions if a["kind"] == "reclaim")
    assert reclaim["files"] == ["/models/weights.bin"]
    assert abs(reclaim["recovers_bytes"] - 256 * MIB) <= 0.1 * 256 * MIB
