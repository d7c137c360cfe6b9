"""shim/functions.h declares each hooked function once: the C library is generated from it, and
the Python view the decoder and analysis read (recording/cuda_functions.py) is what the header
says, compiled and compared."""

from __future__ import annotations

import subprocess

import pytest

from uvmtrace.analysis import items
from uvmtrace.recording import cuda_functions
from uvmtrace.shim import decode, functions
from uvmtrace.shim import file_layout as layout


@pytest.fixture(scope="module")
def table() -> list[functions.TableRow]:
    return functions.read_table()


def test_the_python_view_is_generated_from_the_header(table):
    assert tuple(row.function for row in table) == cuda_functions.FUNCTIONS
    assert functions.render(table) in functions.VIEW.read_text(), (
        "stale: run python -m uvmtrace.shim.functions"
    )
    assert functions.main(["--check"]) == 0


def test_every_function_has_one_id_and_one_name(table):
    ids = [row.function.id for row in table if row.function.id]
    names = [row.function.name for row in table]
    assert len(set(ids)) == len(ids) and len(set(names)) == len(names)
    assert {
        row.function.id: row.function.name for row in table if row.function.id
    } == layout.FUNCTIONS
    exports = [name for row in table for v in row.variants for name in v.exports]
    assert len(set(exports)) == len(exports)


def test_decoder_and_analysis_understand_every_column(table):
    for row in table:
        f = row.function
        assert f.lib in ("cuda", "nvml", "libc"), f
        assert f.memory is None or f.memory in items.CUDA_MEMORY_KINDS, f
        assert f.aux is None or f.aux in decode.AUX_WORD or f.aux == "location", f
    assert set(items.CUDA_QUERY_SIGNAL) == {"cuMemGetInfo", "nvmlDeviceGetMemoryInfo", "sysinfo"}
    assert {"cuMemGetInfo", "nvmlDeviceGetMemoryInfo"} == items.DEVICE_SIGNALS
    assert items.CUDA_MEMORY_KIND["cuMemCreate"] == "vmm"
    assert "cuMemHostRegister" not in items.CUDA_ALLOC_EVENTS  # pins, never allocates
    assert "cuMemFreeHost" in items.CUDA_RELEASE_EVENTS


def test_cuGetProcAddress_versions_pick_exactly_one_abi(table):
    for row in table:
        if row.function.lib != "cuda":
            continue
        spans = sorted((v.since, v.until) for v in row.variants)
        assert spans[0][0] == 0, row.function.name
        for (_, until), (since, _) in zip(spans, spans[1:], strict=False):
            assert until == since, row.function.name  # no gap, no overlap
        # Only cuCtxCreate stops: its _v3/_v4 take other arguments and are handed out unwrapped.
        assert spans[-1][1] == 0 or row.function.name == "cuCtxCreate"


def test_the_library_exports_exactly_the_table(table, shim):
    nm = subprocess.run(
        ["nm", "-D", "--defined-only", str(shim)], capture_output=True, text=True, check=True
    )
    exported = {line.split()[-1] for line in nm.stdout.splitlines() if " T " in line}
    declared = {name for row in table for v in row.variants for name in v.exports}
    assert exported == declared | {"dlsym"}
