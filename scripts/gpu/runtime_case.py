"""The CUDA runtime (cuda-python's cudart bindings): cudaMallocManaged, cudaHostAlloc,
cudaMalloc, cudaMemGetInfo - all reach the driver through cuGetProcAddress."""

import json
import sys

from cuda.bindings import runtime as rt

MiB = 1 << 20


def ok(ret):
    err, *rest = ret
    assert err == rt.cudaError_t.cudaSuccess, err
    return rest[0] if len(rest) == 1 else rest


ok(rt.cudaSetDevice(0))
managed = int(ok(rt.cudaMallocManaged(48 * MiB, rt.cudaMemAttachGlobal)))
host = int(ok(rt.cudaHostAlloc(24 * MiB, rt.cudaHostAllocDefault)))
dev = int(ok(rt.cudaMalloc(128 * MiB)))
free, total = (int(x) for x in ok(rt.cudaMemGetInfo()))
result = {
    "managed": [managed, 48 * MiB],
    "host": [host, 24 * MiB],
    "device": [dev, 128 * MiB],
    "mem_get_info": [[free, total]],
}
with open(sys.argv[1], "w") as out:
    json.dump(result, out)
