"""Sizing rules and CUDA memory on recordings of real allocators, made on an H200 with
`uvmtrace shim run` (scripts/gpu/sizing_cases.sh; docs/validation.md). Each program wrote down
what it computed and what its allocator said it held (tests/data/sizing/truths.json): the report
must find the program's own rule and fraction, and the memory the allocator holds."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from uvmtrace.analysis.load import load_run
from uvmtrace.analysis.render_json import load_schema, to_json
from uvmtrace.analysis.report import build_diff, build_report
from uvmtrace.recording.schema import SCHEMA_VERSION

MIB = 1 << 20
DATA = Path(__file__).resolve().parent / "data" / "sizing"
TRUTHS = json.loads((DATA / "truths.json").read_text())
CASES = sorted(TRUTHS)


def report(case: str) -> dict:
    return build_report(DATA / f"{case}.parquet")


@pytest.mark.parametrize("case", CASES)
def test_the_program_s_own_rule_and_fraction_are_inferred(case: str):
    truth = TRUTHS[case]
    kv = report(case)["sizing"]["kv"]
    assert kv is not None, f"{case}: nothing explained"
    assert kv["rule"] == truth["rule"]
    assert kv["fraction"] == pytest.approx(truth["fraction"], abs=0.005)
    assert kv["signal"] == "cuMemGetInfo"


@pytest.mark.parametrize("case", [c for c in CASES if "kv_tensor_bytes" in TRUTHS[c]])
def test_a_kv_cache_split_over_many_allocations_is_fitted_as_their_sum(case: str):
    truth, kv = TRUTHS[case], report(case)["sizing"]["kv"]
    # the allocator rounds each tensor up (2 MiB; 20 MiB pages with expandable segments)
    assert kv["bytes"] == pytest.approx(truth["kv_bytes_allocated"], abs=24 << 20)
    assert kv["allocations"] >= len(truth["kv_tensor_bytes"])
    assert kv["residual_bytes"] <= 16 << 20


@pytest.mark.parametrize("case", ["torch_default", "torch_expandable"])
def test_cuda_device_memory_at_the_end_is_pytorch_s_memory_reserved(case: str):
    cm = report(case)["cuda_memory"]
    assert cm["device_bytes_end"] == TRUTHS[case]["memory_reserved"]
    kinds = {k["kind"]: k["end_bytes"] for k in cm["by_kind"]}
    assert kinds["pinned_host"] == TRUTHS[case]["pinned_bytes"]  # torch's pin_memory=True


def test_expandable_segments_are_vmm_memory_from_c10_cuda():
    cm = report("torch_expandable")["cuda_memory"]
    assert [k["kind"] for k in cm["by_kind"]] == ["vmm", "pinned_host"]
    assert cm["by_caller"][0]["caller"] == "libc10_cuda.so"


def test_a_stream_ordered_pool_is_a_pool_and_counts_what_was_taken_from_it():
    cm = report("torch_async")["cuda_memory"]
    pool = {k["kind"]: k for k in cm["by_kind"]}["pool"]
    # what the program held at its peak (the pool's own reserve is not visible to the driver API)
    assert pool["peak_bytes"] == TRUTHS["torch_async"]["max_memory_allocated"]
    assert pool["end_bytes"] == 0  # torch gave every block back at exit (cuMemFreeAsync)


def test_jax_s_preallocation_is_xla_s_bytes_limit_and_called_a_pool():
    for case in ("jax_default", "jax_fraction_05"):
        rep = report(case)
        kv = rep["sizing"]["kv"]
        assert kv["bytes"] == TRUTHS[case]["memory_stats"]["bytes_limit"]
        assert kv["residual_bytes"] < 2 << 20  # XLA rounds to the VMM granularity
        assert kv["what"] == "preallocated pool"
        assert rep["sizing"]["framework"]["name"] == "jax"
        assert rep["conclusion"][0].startswith("The preallocated pool (")
        assert rep["cuda_memory"]["by_caller"][0]["caller"] == "xla_cuda_plugin.so"


def test_the_cuda_python_runs_hold_every_kind_of_cuda_memory():
    for case in ("cuda_driver_vmm", "cuda_runtime_pool"):
        truth, cm = TRUTHS[case], report(case)["cuda_memory"]
        kinds = {k["kind"]: k["end_bytes"] for k in cm["by_kind"]}
        assert kinds["pinned_host"] == truth["pinned_host"][1]
        assert kinds["managed"] == truth["managed"][1]
        assert kinds["registered_host"] == truth["registered_host"][1]
        assert cm["device_bytes_end"] == truth["device_bytes_live"]
    assert "vmm" in {k["kind"] for k in report("cuda_driver_vmm")["cuda_memory"]["by_kind"]}


def test_without_evidence_of_a_framework_it_is_a_large_allocation_not_a_kv_cache():
    rep = report("torch_default")
    assert rep["sizing"]["framework"] is None
    assert rep["sizing"]["kv"]["what"] == "large allocation"
    assert rep["conclusion"][0].startswith("The large allocation (124.4 GiB, 8 x cuMemAlloc")


def test_a_vllm_style_run_is_named_by_its_command_and_its_kv_cache_by_its_rule():
    rep = report("vllm_style")
    assert rep["sizing"]["framework"]["evidence"] == "command"
    kv = rep["sizing"]["kv"]
    assert (kv["what"], kv["framework"]) == ("KV cache", "vllm")
    assert kv["used_bytes"] == TRUTHS["vllm_style"]["used_bytes"]  # weights + peak activations


@pytest.mark.parametrize("case", CASES)
def test_every_real_report_validates_against_the_schema(case: str):
    # written by this release's `uvmtrace shim run`: the current recording schema
    assert load_run(DATA / f"{case}.parquet").metadata["schema_version"] == SCHEMA_VERSION
    jsonschema.Draft202012Validator(load_schema()).validate(json.loads(to_json(report(case))))


def test_the_diff_decomposes_the_cuda_side_by_kind_and_library():
    d = build_diff(DATA / "torch_default.parquet", DATA / "torch_expandable.parquet")
    assert d["decomposition"]["at"] == "sizing_query"
    cuda = d["decomposition"]["cuda"]
    by_kind = {r["key"]: r["difference"] for r in cuda["by_kind"]}
    # at A's query its allocator held 4 x 256 MiB of weights and one 2 MiB small-pool segment
    assert by_kind["device"] == -(4 * 256 + 2) * MIB
    # B (expandable segments) held the same as 20 MiB VMM pages
    assert 0 < by_kind["vmm"] - (4 * 256 + 2) * MIB < 40 * MIB
    assert "pinned_host" not in by_kind  # both pinned 64 MiB
    assert cuda["device_difference_bytes"] == by_kind["vmm"] + by_kind["device"]
    jsonschema.Draft202012Validator(load_schema()).validate(json.loads(to_json(d)))


def test_the_diff_names_a_kv_cache_only_on_evidence():
    d = build_diff(DATA / "torch_default.parquet", DATA / "torch_expandable.parquet")
    assert d["kv"]["what"] == "large allocation"
    assert d["kv"]["a_rule"] == d["kv"]["b_rule"] == "fraction_of_free"
    assert any(line.startswith("Sized allocation: A 124.4 GiB") for line in d["conclusion"])
    assert not any(line.startswith("KV cache:") for line in d["conclusion"])


def test_the_report_schema_is_itself_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(load_schema())
