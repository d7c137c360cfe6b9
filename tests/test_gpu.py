"""On a GPU host: PyTorch and the driver API under the shim, checked against their own numbers.

Skips here (no GPU); run on the device machine: `python -m pytest -q tests/test_gpu.py`
(results of the last run: docs/validation.md, "Shim")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from uvmtrace.shim.decode import ShimDecoder
from uvmtrace.shim.rundir import make_run_dir, shim_env

pytestmark = pytest.mark.usefixtures("need_gpu")
CASES = Path(__file__).resolve().parent.parent / "scripts" / "gpu"
DEVICE_ALLOCS = {"cuMemAlloc", "cuMemAllocAsync", "cuMemAllocFromPoolAsync", "cuMemAllocPitch"}
DEVICE_FREES = {"cuMemFree", "cuMemFreeAsync"}


def run_case(case: str, shim: Path, tmp_path: Path) -> tuple[dict, list[dict]]:
    run_dir = make_run_dir(tmp_path)
    out = tmp_path / f"{case}.json"
    cmd = [sys.executable, str(CASES / f"{case}.py"), str(out)]
    proc = subprocess.run(cmd, env=shim_env(run_dir, lib=shim), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # the shim said nothing: it recorded everything it was asked
    dec = ShimDecoder(run_dir)
    rows = pa.Table.from_batches(dec.poll() + dec.close()).to_pylist()
    assert dec.stats()["torn"] == 0
    return json.loads(out.read_text()), rows


def live_device_bytes(rows: list[dict]) -> int:
    live: dict[int, int] = {}
    for r in rows:
        if r["result"] == 0 and r["event"] in DEVICE_ALLOCS:
            live[r["addr"]] = r["bytes"]
        elif r["result"] == 0 and r["event"] in DEVICE_FREES:
            live.pop(r["addr"], None)
    return sum(live.values())


def test_torch_mem_get_info_and_reserved_memory_match_the_records(shim: Path, tmp_path: Path):
    pytest.importorskip("torch", reason="needs PyTorch")
    torch_says, rows = run_case("torch_case", shim, tmp_path)
    recorded = [[r["free_bytes"], r["total_bytes"]] for r in rows if r["event"] == "cuMemGetInfo"]
    assert recorded == torch_says["mem_get_info"]
    assert live_device_bytes(rows) == torch_says["memory_reserved"]
    pinned = [r for r in rows if r["event"] == "cuMemHostAlloc"]
    assert any(r["addr"] == torch_says["pinned_ptr"] for r in pinned)


def test_driver_api_calls_match_what_cuda_python_got(shim: Path, tmp_path: Path):
    said, rows = run_case("driver_case", shim, tmp_path)
    recorded = [[r["free_bytes"], r["total_bytes"]] for r in rows if r["event"] == "cuMemGetInfo"]
    assert recorded == said["mem_get_info"]
    assert live_device_bytes(rows) == sum(said["live_device"].values())
    assert any(r["event"] == "cuMemFree" and r["addr"] == said["freed"] for r in rows)
    managed_ptr, managed_size = said["managed"]
    assert any(
        r["event"] == "cuMemAllocManaged"
        and r["addr"] == managed_ptr
        and r["bytes"] == managed_size
        for r in rows
    )
    host_ptr, host_size = said["host"]
    assert any(r["addr"] == host_ptr and r["bytes"] == host_size for r in rows)
