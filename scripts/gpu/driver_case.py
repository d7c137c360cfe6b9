"""cuda-python calling the driver API directly (it resolves every function through
cuGetProcAddress): the values it got back, for comparison with the records."""

import json
import sys

from cuda.bindings import driver as d

MiB = 1 << 20


def ok(ret):
    err, *rest = ret
    assert err == d.CUresult.CUDA_SUCCESS, err
    return rest[0] if len(rest) == 1 else rest


ok(d.cuInit(0))
dev = ok(d.cuDeviceGet(0))
ctx = ok(d.cuDevicePrimaryCtxRetain(dev))
ok(d.cuCtxSetCurrent(ctx))
queries = [[int(x) for x in ok(d.cuMemGetInfo())]]
sizes = [64 * MiB, 100 * MiB, 1024 * MiB]
ptrs = [int(ok(d.cuMemAlloc(n))) for n in sizes]
ok(d.cuMemFree(ptrs[1]))
oom = d.cuMemAlloc(1 << 50)[0]
managed = int(ok(d.cuMemAllocManaged(32 * MiB, d.CUmemAttach_flags.CU_MEM_ATTACH_GLOBAL.value)))
host = int(ok(d.cuMemHostAlloc(16 * MiB, 0)))
queries.append([int(x) for x in ok(d.cuMemGetInfo())])
result = {
    "mem_get_info": queries,
    "live_device": {str(p): n for p, n in zip(ptrs, sizes, strict=True) if p != ptrs[1]},
    "freed": ptrs[1],
    "oom_result": int(oom),
    "managed": [managed, 32 * MiB],
    "host": [host, 16 * MiB],
}
with open(sys.argv[1], "w") as out:
    json.dump(result, out)
