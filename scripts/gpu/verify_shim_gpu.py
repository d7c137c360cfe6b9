"""Check the GPU run of scripts/gpu/shim_gpu.sh here: decode the shim files it brought back and
compare them with the numbers torch / cuda-python reported themselves.

    python scripts/gpu/verify_shim_gpu.py <dir holding shim_runs.tar.gz>
"""

from __future__ import annotations

import json
import sys
import tarfile
import tempfile
from pathlib import Path

import pyarrow as pa

from uvmtrace.shim.decode import ShimDecoder

DEVICE_ALLOCS = {"cuMemAlloc", "cuMemAllocAsync", "cuMemAllocFromPoolAsync", "cuMemAllocPitch"}
DEVICE_FREES = {"cuMemFree", "cuMemFreeAsync"}


def records(run_dir: Path) -> tuple[list[dict], dict]:
    dec = ShimDecoder(run_dir)
    batches = dec.poll() + dec.close()
    return pa.Table.from_batches(batches).to_pylist(), dec.stats()


def live_device_bytes(rows: list[dict]) -> int:
    live: dict[int, int] = {}
    for r in rows:
        if r["result"] != 0:
            continue
        if r["event"] in DEVICE_ALLOCS:
            live[r["addr"]] = r["bytes"]
        elif r["event"] in DEVICE_FREES:
            live.pop(r["addr"], None)
    return sum(live.values())


def queries(rows: list[dict]) -> list[list[int]]:
    return [[r["free_bytes"], r["total_bytes"]] for r in rows if r["event"] == "cuMemGetInfo"]


def find(rows: list[dict], event: str, addr: int) -> dict | None:
    return next((r for r in rows if r["event"] == event and r["addr"] == addr), None)


def check(runs: Path) -> dict[str, bool]:
    """Each case's own numbers against its decoded records (`runs`: the unpacked tarball)."""
    checks: dict[str, bool] = {}

    t = json.loads((runs / "torch_case.json").read_text())
    rows, stats = records(runs / "torch_case")
    checks["torch mem_get_info == recorded cuMemGetInfo"] = queries(rows) == t["mem_get_info"]
    checks["torch memory_reserved == live recorded device bytes"] = (
        live_device_bytes(rows) == t["memory_reserved"]
    )
    checks["torch pin_memory -> cuMemHostAlloc at data_ptr"] = (
        find(rows, "cuMemHostAlloc", t["pinned_ptr"]) is not None
    )
    print("torch", stats, "live", live_device_bytes(rows), "reserved", t["memory_reserved"])

    d = json.loads((runs / "driver_case.json").read_text())
    rows, stats = records(runs / "driver_case")
    checks["cuda-python cuMemGetInfo == recorded"] = queries(rows) == d["mem_get_info"]
    checks["cuda-python live device bytes"] = live_device_bytes(rows) == sum(
        d["live_device"].values()
    )
    managed = find(rows, "cuMemAllocManaged", d["managed"][0])
    host = find(rows, "cuMemHostAlloc", d["host"][0])
    checks["cuda-python cuMemAllocManaged"] = bool(managed and managed["bytes"] == d["managed"][1])
    checks["cuda-python cuMemHostAlloc"] = bool(host and host["bytes"] == d["host"][1])
    checks["cuda-python OOM recorded by name"] = any(
        r["result_name"] == "CUDA_ERROR_OUT_OF_MEMORY" for r in rows
    )
    print("driver", stats)

    rt = json.loads((runs / "runtime_case.json").read_text())
    rows, stats = records(runs / "runtime_case")
    for event, key in (
        ("cuMemAllocManaged", "managed"),
        ("cuMemHostAlloc", "host"),
        ("cuMemAlloc", "device"),
    ):
        r = find(rows, event, rt[key][0])
        checks[f"cudart {key} -> {event}"] = bool(r and r["bytes"] == rt[key][1])
    checks["cudaMemGetInfo == recorded"] = queries(rows) == rt["mem_get_info"]
    print("runtime", stats)
    return checks


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(Path(sys.argv[1]) / "shim_runs.tar.gz") as tar:
            tar.extractall(tmp, filter="data")
        checks = check(Path(tmp) / "runs")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
