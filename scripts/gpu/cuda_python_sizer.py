"""KV sizers written against cuda-python, as a C++ runtime would size it: `fraction x free`
right after the query. `driver`: cuMemGetInfo, then 0.85 x free as VMM memory (cuMemCreate
chunks of 1 GiB mapped into one reserved range, like vLLM's/SGLang's memory savers);
`runtime`: cudaMemGetInfo, then 0.8 x free from the stream-ordered pool (cudaMallocAsync, 8
per-layer buffers). Both also hold pinned, managed and registered host memory.
Usage: cuda_python_sizer.py driver|runtime OUT.json"""

import json
import os
import sys
import time

import numpy as np

MiB = 1 << 20
GiB = 1 << 30
LAYERS = 8


def ok(ret):
    err, *rest = ret
    assert int(err) == 0, err
    return rest[0] if len(rest) == 1 else rest


def driver() -> dict:
    from cuda.bindings import driver as d

    ok(d.cuInit(0))
    dev = ok(d.cuDeviceGet(0))
    ctx = ok(d.cuDevicePrimaryCtxRetain(dev))
    ok(d.cuCtxSetCurrent(ctx))
    weights = int(ok(d.cuMemAlloc(1 * GiB)))
    host = int(ok(d.cuMemHostAlloc(32 * MiB, 0)))
    managed = int(ok(d.cuMemAllocManaged(16 * MiB, d.CUmemAttach_flags.CU_MEM_ATTACH_GLOBAL.value)))
    buf = np.zeros(8 * MiB, dtype=np.uint8)
    ok(d.cuMemHostRegister(buf.ctypes.data, buf.nbytes, 0))
    free, total = (int(x) for x in ok(d.cuMemGetInfo()))
    fraction = 0.85
    prop = d.CUmemAllocationProp()
    prop.type = d.CUmemAllocationType.CU_MEM_ALLOCATION_TYPE_PINNED
    prop.location.type = d.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
    prop.location.id = 0
    gran = int(
        ok(
            d.cuMemGetAllocationGranularity(
                prop, d.CUmemAllocationGranularity_flags.CU_MEM_ALLOC_GRANULARITY_MINIMUM
            )
        )
    )
    size = int(fraction * free) // gran * gran
    va = int(ok(d.cuMemAddressReserve(size, 0, 0, 0)))
    chunks, off = [], 0
    while off < size:
        n = min(GiB, size - off)
        handle = ok(d.cuMemCreate(n, prop, 0))
        ok(d.cuMemMap(va + off, n, 0, handle, 0))
        chunks.append(n)
        off += n
    access = d.CUmemAccessDesc()
    access.location = prop.location
    access.flags = d.CUmemAccess_flags.CU_MEM_ACCESS_FLAGS_PROT_READWRITE
    ok(d.cuMemSetAccess(va, size, [access], 1))
    ok(d.cuCtxSynchronize())
    return {
        "rule": "fraction_of_free",
        "fraction": fraction,
        "free_bytes": free,
        "total_bytes": total,
        "kv_bytes_computed": int(fraction * free),
        "kv_tensor_bytes": chunks,
        "kv_bytes_allocated": size,
        "granularity": gran,
        "weights_bytes": GiB,
        "weights_ptr": weights,
        "pinned_host": [host, 32 * MiB],
        "managed": [managed, 16 * MiB],
        "registered_host": [buf.ctypes.data, buf.nbytes],
        "device_bytes_live": GiB + size,
    }


def runtime() -> dict:
    from cuda.bindings import runtime as rt

    ok(rt.cudaSetDevice(0))
    stream = ok(rt.cudaStreamCreate())
    weights = int(ok(rt.cudaMalloc(1 * GiB)))
    host = int(ok(rt.cudaHostAlloc(24 * MiB, rt.cudaHostAllocDefault)))
    managed = int(ok(rt.cudaMallocManaged(16 * MiB, rt.cudaMemAttachGlobal)))
    buf = np.zeros(8 * MiB, dtype=np.uint8)
    ok(rt.cudaHostRegister(buf.ctypes.data, buf.nbytes, rt.cudaHostRegisterDefault))
    scratch = ok(rt.cudaMallocAsync(512 * MiB, stream))  # a profiling buffer, freed again
    ok(rt.cudaFreeAsync(scratch, stream))
    ok(rt.cudaStreamSynchronize(stream))
    free, total = (int(x) for x in ok(rt.cudaMemGetInfo()))
    fraction = 0.8
    per_layer = int(fraction * free) // LAYERS // (2 * MiB) * (2 * MiB)
    kv = [int(ok(rt.cudaMallocAsync(per_layer, stream))) for _ in range(LAYERS)]
    ok(rt.cudaStreamSynchronize(stream))
    pool = ok(rt.cudaDeviceGetDefaultMemPool(0))
    attr = rt.cudaMemPoolAttr
    reserved = ok(rt.cudaMemPoolGetAttribute(pool, attr.cudaMemPoolAttrReservedMemCurrent))
    used = ok(rt.cudaMemPoolGetAttribute(pool, attr.cudaMemPoolAttrUsedMemCurrent))
    return {
        "rule": "fraction_of_free",
        "fraction": fraction,
        "free_bytes": free,
        "total_bytes": total,
        "kv_bytes_computed": int(fraction * free),
        "kv_tensor_bytes": [per_layer] * LAYERS,
        "kv_bytes_allocated": per_layer * LAYERS,
        "kv_ptrs": kv,
        "weights_bytes": GiB,
        "weights_ptr": weights,
        "pinned_host": [host, 24 * MiB],
        "managed": [managed, 16 * MiB],
        "registered_host": [buf.ctypes.data, buf.nbytes],
        "pool_reserved_bytes": int(reserved),
        "pool_used_bytes": int(used),
        "device_bytes_live": GiB + per_layer * LAYERS,
    }


mode, out_path = sys.argv[1], sys.argv[2]
truth = {"program": f"cuda_python_sizer {mode}"} | (driver() if mode == "driver" else runtime())
truth |= {"t_monotonic_ns": time.monotonic_ns(), "pid": os.getpid()}
with open(out_path, "w") as out:
    json.dump(truth, out, indent=1)
