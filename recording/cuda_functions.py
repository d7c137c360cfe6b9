"""The shim's functions as the recording's `cuda` events: one row per function of
shim/functions.h (what each column means is written there).

The rows are generated from that header (`python -m uvmtrace.shim.functions`; do not edit them by
hand) and tests/test_shim_functions.py checks that they agree. Here, in the recording's package,
so the decoder and analysis read the same names and kinds without analysis importing shim/.
"""

from __future__ import annotations

from typing import NamedTuple


class CudaFunction(NamedTuple):
    id: int  # the record's `func`; 0: never recorded (cuGetProcAddress)
    name: str  # the event name
    lib: str  # cuda, nvml, libc
    kind: str  # query, alloc, free, register, unregister, map, unmap, context, lookup
    memory: str | None  # device, vmm, pool, pinned_host, managed, registered_host
    bytes: bool  # `bytes` is the size asked
    flags: bool  # `flags` is shown
    aux: str | None  # what `aux` holds: stream, pool, handle, device, nvml_device, location


# BEGIN generated from shim/functions.h by `python -m uvmtrace.shim.functions`
FUNCTIONS: tuple[CudaFunction, ...] = (
    CudaFunction(1, "cuMemGetInfo", "cuda", "query", None, False, False, None),
    CudaFunction(2, "cuMemAlloc", "cuda", "alloc", "device", True, False, None),
    CudaFunction(3, "cuMemAllocPitch", "cuda", "alloc", "device", True, False, None),
    CudaFunction(4, "cuMemAllocManaged", "cuda", "alloc", "managed", True, True, None),
    CudaFunction(5, "cuMemAllocHost", "cuda", "alloc", "pinned_host", True, False, None),
    CudaFunction(6, "cuMemHostAlloc", "cuda", "alloc", "pinned_host", True, True, None),
    CudaFunction(7, "cuMemHostRegister", "cuda", "register", "registered_host", True, True, None),
    CudaFunction(
        8, "cuMemHostUnregister", "cuda", "unregister", "registered_host", False, False, None
    ),
    CudaFunction(9, "cuMemFree", "cuda", "free", "device", False, False, None),
    CudaFunction(10, "cuMemFreeHost", "cuda", "free", "pinned_host", False, False, None),
    CudaFunction(11, "cuMemAllocAsync", "cuda", "alloc", "pool", True, False, "stream"),
    CudaFunction(12, "cuMemAllocFromPoolAsync", "cuda", "alloc", "pool", True, False, "pool"),
    CudaFunction(13, "cuMemFreeAsync", "cuda", "free", "pool", False, False, "stream"),
    CudaFunction(14, "cuMemCreate", "cuda", "alloc", "vmm", True, True, "location"),
    CudaFunction(15, "cuMemRelease", "cuda", "free", "vmm", False, False, None),
    CudaFunction(16, "cuMemMap", "cuda", "map", None, True, True, "handle"),
    CudaFunction(17, "cuMemUnmap", "cuda", "unmap", None, True, False, None),
    CudaFunction(18, "cuCtxCreate", "cuda", "context", None, False, True, "device"),
    CudaFunction(19, "cuDevicePrimaryCtxRetain", "cuda", "context", None, False, False, "device"),
    CudaFunction(20, "nvmlDeviceGetMemoryInfo", "nvml", "query", None, False, False, "nvml_device"),
    CudaFunction(21, "sysinfo", "libc", "query", None, False, False, None),
    CudaFunction(0, "cuGetProcAddress", "cuda", "lookup", None, False, False, None),
)
# END generated

RECORDED = tuple(f for f in FUNCTIONS if f.id)
BY_NAME = {f.name: f for f in FUNCTIONS}


def names(kind: str) -> tuple[str, ...]:
    """Event names of the recorded functions of one kind, in table order."""
    return tuple(f.name for f in RECORDED if f.kind == kind)
