"""CUDA host-memory calls joined to the kernel charges they caused, on real recordings made on an
H200 with kernel probes and the shim together (scripts/gpu/fullstack.sh; docs/validation.md).

h200_fullstack: one process, PyTorch then cuda-python: torch pinned 1 GiB, cuMemHostAlloc
512 MiB, cuMemAllocManaged 1 GiB touched from the CPU, cuMemHostRegister of 512 MiB malloc'd and
untouched, cuMemAlloc 1 GiB. h200_fullstack.json is what the program saw itself (addresses,
sizes, its own /proc/self/stat fault counts per step).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.recordings import Recorder
from uvmtrace.analysis.load import load_run
from uvmtrace.analysis.render_json import load_schema
from uvmtrace.analysis.report import build_diff, build_report

DATA = Path(__file__).parent / "data"
MiB = 1 << 20
GiB = 1 << 30
PID = json.loads((DATA / "h200_fullstack.json").read_text())["pid"]


@pytest.fixture(scope="module")
def fullstack() -> dict:
    return build_report(DATA / "h200_fullstack.parquet")


@pytest.fixture(scope="module")
def program() -> dict:
    """The program's own record of its steps, by name."""
    own = json.loads((DATA / "h200_fullstack.json").read_text())
    return {s["step"]: s for s in own["steps"]}


def joins(rep: dict) -> dict[int, dict]:
    return {j["addr"]: j for j in rep["cuda_memory"]["host_charges"]}


@pytest.mark.parametrize(
    ("step", "call", "item"),
    [
        ("torch_pinned", "cuMemHostAlloc", "NR_SHMEM"),
        ("driver_host_alloc", "cuMemHostAlloc", "NR_SHMEM"),
        ("driver_managed", "cuMemAllocManaged", "MEMCG_KMEM"),
        ("driver_host_register", "cuMemHostRegister", "NR_ANON_MAPPED"),
    ],
)
def test_each_host_buffer_joins_to_its_charges_within_5_percent(
    fullstack: dict, program: dict, step: str, call: str, item: str
) -> None:
    asked = program[step]
    j = joins(fullstack)[asked["addr"]]
    assert (j["call"], j["bytes"], j["pid"]) == (call, asked["bytes"], PID)
    assert abs(j["charged_bytes"] - asked["bytes"]) <= 0.05 * asked["bytes"]
    assert abs(j["items"][item] - asked["bytes"]) <= 0.01 * asked["bytes"]  # the page kind
    assert j["cgroup"].startswith("/")  # the command's own cgroup, by path


def test_managed_memory_is_charged_when_the_cpu_touches_it_not_at_the_call(
    fullstack: dict, program: dict
) -> None:
    run = load_run(DATA / "h200_fullstack.parquet")
    j = joins(fullstack)[program["driver_managed"]["addr"]]
    touch = program["managed_cpu_touch"]
    kmem = run.charges.filter(
        (run.charges["item"].cast(str) == "MEMCG_KMEM") & (run.charges["pid"] == j["pid"])
    )
    during_touch = kmem.filter(
        (kmem["ts_ns"] >= touch["t0_ns"] - 100_000_000) & (kmem["ts_ns"] <= touch["t1_ns"])
    )["bytes"].sum()
    assert during_touch >= 0.95 * GiB  # the charges came with the memset, 0.5 s after the call
    assert j["dur_s"] < 0.01


def test_device_allocations_join_nothing(fullstack: dict, program: dict) -> None:
    assert program["driver_device"]["addr"] not in joins(fullstack)
    assert {j["kind"] for j in fullstack["cuda_memory"]["host_charges"]} == {
        "context",  # the driver's own pinned buffers, made while torch created its context
        "pinned",
        "managed",
        "registered",
    }


def test_the_report_says_each_join_in_words(fullstack: dict) -> None:
    text = "\n".join(fullstack["conclusion"])
    assert "cuMemHostAlloc 1.0 GiB (pid " in text
    assert "caller libcudart.so.13) -> +1.0 GiB NR_SHMEM" in text
    assert "cuMemAllocManaged 1.0 GiB" in text and "+1.0 GiB MEMCG_KMEM" in text
    assert "cuMemHostRegister 512.0 MiB" in text and "+512.0 MiB NR_ANON_MAPPED" in text
    jsonschema.validate(fullstack, load_schema())


def test_faults_the_kernel_took_while_pinning_are_explained_not_lost(
    fullstack: dict, program: dict
) -> None:
    """The /proc gap is the pages the driver pinned: minflt rose by one per 4 KiB page during
    the pinning calls (the program's own counters), with no page-fault exception to trace."""
    (row,) = fullstack["reconciliation"]["faults"]
    pinned_by_program = sum(
        program[s]["minflt"] for s in ("torch_pinned", "driver_host_alloc", "driver_host_register")
    )
    assert row["traced_faults"] < 0.2 * row["proc_faults"]  # what the tracepoints saw alone
    # the three pinning calls, plus the ~8 MiB the driver pinned while creating the context
    assert 0 <= row["pinned_faults"] - pinned_by_program <= 0.01 * pinned_by_program
    assert row["traced_faults"] + row["pinned_faults"] == row["proc_faults"]
    summary = fullstack["reconciliation"]["summary"]
    assert summary["fault_share"] == 1.0
    assert summary["trust"] == "high"
    assert "taken inside the kernel while CUDA calls pinned host memory" in summary["line"]


def test_jax_staging_buffer_joins_its_shmem_not_the_numpy_array_beside_it() -> None:
    rep = build_report(DATA / "h200_jax.parquet")
    big = [j for j in rep["cuda_memory"]["host_charges"] if j["bytes"] == 256 * MiB]
    assert len(big) == 1 and big[0]["caller_module"] == "xla_cuda_plugin.so"
    assert abs(big[0]["charged_bytes"] - 256 * MiB) <= 0.05 * 256 * MiB
    assert "NR_ANON_MAPPED" not in big[0]["items"]  # np.ones(256 MiB) in the same bucket
    # two 4-byte cuDNN allocations in one bucket share its charges, none counted twice
    tiny = [j for j in rep["cuda_memory"]["host_charges"] if j["bytes"] == 4]
    assert len(tiny) == 2 and tiny[0]["charged_bytes"] == tiny[1]["charged_bytes"]


def test_a_discrete_gpu_sized_by_cumemgetinfo_is_the_negative_control() -> None:
    warm = build_report(DATA / "h200_sizer_warm.parquet")
    assert warm["sizing"]["kv"]["signal"] == "cuMemGetInfo"
    assert any(
        line.startswith("The sizing signal cuMemGetInfo counts device memory")
        and "cannot move it" in line
        for line in warm["conclusion"]
    )
    d = build_diff(DATA / "h200_sizer_warm.parquet", DATA / "h200_sizer_cold.parquet")
    assert d["signal"]["difference_bytes"] == 0 and d["signal"]["device_memory"]
    assert d["decomposition"]["host_memory"]["by_kind"]["file"] >= 0.99 * GiB  # cold read
    assert set(d["host_charges"]["a"]) == set(d["host_charges"]["b"]) == {"context"}
    jsonschema.validate(d, load_schema())


def test_the_diff_names_the_cuda_host_memory_one_run_had_charged_more() -> None:
    d = build_diff(DATA / "h200_jax.parquet", DATA / "h200_fullstack.parquet")
    (line,) = [c for c in d["conclusion"] if c.startswith("CUDA host memory charged")]
    assert "managed +1.0 GiB" in line and "registered +513.0 MiB" in line
    assert d["host_charges"]["b"]["managed"] == {
        "calls": 1,
        "bytes": GiB,
        "charged_bytes": GiB,
    }
    jsonschema.validate(d, load_schema())


def _cuda(rec: Recorder, t: float, call: str, size: int, addr: int, dur_s: float = 0.0) -> None:
    rec.add(t, "cuda", call, pid=PID_SYN, tid=PID_SYN, bytes=size, addr=addr, result=0,
            dur_ns=round(dur_s * 1e9), caller="libtest.so!+0x10")  # fmt: skip


PID_SYN = 100


def _synthetic(tmp_path: Path, build, **meta) -> dict:
    rec = Recorder(**meta)
    build(rec)
    return build_report(rec.write(tmp_path / "run.parquet"))


def test_registering_memory_already_resident_charges_nothing_and_says_so(tmp_path: Path) -> None:
    def build(rec: Recorder) -> None:
        rec.charge(1.0, 11, "NR_ANON_MAPPED", 256 * MiB)  # the program filled it first
        _cuda(rec, 2.0, "cuMemHostRegister", 256 * MiB, 0x7000, dur_s=0.05)

    (j,) = _synthetic(tmp_path, build)["cuda_memory"]["host_charges"]
    assert (j["charged_bytes"], j["unmatched_bytes"], j["items"]) == (0, 256 * MiB, {})


def test_managed_memory_freed_before_any_touch_joins_nothing(tmp_path: Path) -> None:
    def build(rec: Recorder) -> None:
        _cuda(rec, 1.0, "cuMemAllocManaged", GiB, 0x9000)
        _cuda(rec, 2.0, "cuMemFree", 0, 0x9000)
        rec.charge(3.0, 11, "MEMCG_KMEM", 64 * MiB)  # kernel memory for something else, later

    (j,) = _synthetic(tmp_path, build)["cuda_memory"]["host_charges"]
    assert j["kind"] == "managed" and j["charged_bytes"] == 0


def test_two_pinned_calls_in_one_bucket_split_its_charges_by_size(tmp_path: Path) -> None:
    def build(rec: Recorder) -> None:
        _cuda(rec, 1.01, "cuMemHostAlloc", 96 * MiB, 0xA000, dur_s=0.01)
        _cuda(rec, 1.05, "cuMemHostAlloc", 32 * MiB, 0xB000, dur_s=0.01)
        rec.charge(1.0, 11, "NR_SHMEM", 128 * MiB)  # one 100 ms bucket holds both
        rec.charge(1.0, 11, "NR_FILE_PAGES", 128 * MiB)  # the kernel counts shmem here too
        rec.charge(1.0, 11, "NR_ANON_MAPPED", 50 * MiB)  # the program's own: not pinned memory

    rows = _synthetic(tmp_path, build, raw=False, bucket_ns=100_000_000)
    charged = {j["addr"]: j["items"] for j in rows["cuda_memory"]["host_charges"]}
    assert charged == {0xA000: {"NR_SHMEM": 96 * MiB}, 0xB000: {"NR_SHMEM": 32 * MiB}}
