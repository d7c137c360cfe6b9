"""PyTorch and cuda-python in one process, each host-memory call the driver offers, for
`uvmtrace record` with kernel probes and the shim: every buffer should join to the kernel
charges it caused.

Steps (0.5 s apart, so the recorder's 100 ms buckets never mix two of them):
  torch_device         torch.empty(256 MiB, device="cuda")        default caching allocator
  torch_pinned         torch.empty(1 GiB, pin_memory=True)        cudaHostAlloc -> cuMemHostAlloc
  driver_host_alloc    cuMemHostAlloc(512 MiB)                    pinned, cuda-python
  driver_managed       cuMemAllocManaged(1 GiB)                   nothing resident yet
  managed_cpu_touch    memset of the managed buffer from the CPU  pages appear now
  driver_host_register cuMemHostRegister of 512 MiB malloc'd and never touched
  driver_device        cuMemAlloc(1 GiB)                          device only: no host charge
then frees. For each step the program writes what it saw itself: CLOCK_MONOTONIC window (the
clock of bpf_ktime_get_ns and the shim), the buffer, and its own fault counters from
/proc/self/stat and per thread from /proc/self/task/*/stat, to hold the trace against.

Usage: python fullstack_case.py RESULT.json
"""

import contextlib
import ctypes
import json
import os
import sys
import time

import torch
from cuda.bindings import driver as d

MiB = 1 << 20
GiB = 1 << 30
GAP_S = 0.5


def ok(ret):
    err, *rest = ret
    assert err == d.CUresult.CUDA_SUCCESS, err
    return rest[0] if len(rest) == 1 else (rest or None)


def _flt(path: str) -> tuple[int, int]:
    """minflt, majflt of a /proc stat file (fields 10 and 12; comm may hold spaces)."""
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7]), int(fields[9])


def faults() -> dict:
    threads = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            threads[tid] = sum(_flt(f"/proc/self/task/{tid}/stat"))
    minflt, majflt = _flt("/proc/self/stat")
    return {"minflt": minflt, "majflt": majflt, "threads": threads}


steps = []


def step(name: str, fn) -> object:
    before = faults()
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    out, info = fn()
    t1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    after = faults()
    by_thread = {
        tid: n - before["threads"].get(tid, 0)
        for tid, n in after["threads"].items()
        if n - before["threads"].get(tid, 0)
    }
    steps.append(
        {
            "step": name,
            "t0_ns": t0,
            "t1_ns": t1,
            "minflt": after["minflt"] - before["minflt"],
            "majflt": after["majflt"] - before["majflt"],
            "faults_by_tid": by_thread,
            **info,
        }
    )
    time.sleep(GAP_S)
    return out


start = faults()
t_start = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
dev_t = step(
    "torch_device",
    lambda: (
        (x := torch.empty(256 * MiB, dtype=torch.uint8, device="cuda")),
        {"bytes": 256 * MiB, "addr": x.data_ptr()},
    ),
)
torch.cuda.synchronize()
pinned = step(
    "torch_pinned",
    lambda: (
        (p := torch.empty(GiB, dtype=torch.uint8, pin_memory=True)),
        {"bytes": GiB, "addr": p.data_ptr()},
    ),
)
ok(d.cuInit(0))
ctx = ok(d.cuDevicePrimaryCtxRetain(ok(d.cuDeviceGet(0))))  # torch's own primary context
ok(d.cuCtxSetCurrent(ctx))
host = step(
    "driver_host_alloc",
    lambda: ((h := int(ok(d.cuMemHostAlloc(512 * MiB, 0)))), {"bytes": 512 * MiB, "addr": h}),
)
managed = step(
    "driver_managed",
    lambda: (
        (m := int(ok(d.cuMemAllocManaged(GiB, d.CUmemAttach_flags.CU_MEM_ATTACH_GLOBAL.value)))),
        {"bytes": GiB, "addr": m},
    ),
)
step("managed_cpu_touch", lambda: (ctypes.memset(managed, 1, GiB), {"bytes": GiB, "addr": managed}))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
buf = libc.malloc(512 * MiB)  # glibc maps this fresh: no page is resident before the register
step(
    "driver_host_register",
    lambda: (ok(d.cuMemHostRegister(buf, 512 * MiB, 0)), {"bytes": 512 * MiB, "addr": buf}),
)
device = step(
    "driver_device",
    lambda: ((p := int(ok(d.cuMemAlloc(GiB)))), {"bytes": GiB, "addr": p}),
)
free, total = torch.cuda.mem_get_info()


def release():
    ok(d.cuMemHostUnregister(buf))
    libc.free(buf)
    ok(d.cuMemFree(device))
    ok(d.cuMemFree(managed))
    ok(d.cuMemFreeHost(host))
    return None, {}


step("frees", release)
end = faults()
result = {
    "pid": os.getpid(),
    "t_start_ns": t_start,
    "steps": steps,
    "minflt_total": end["minflt"] - start["minflt"],
    "majflt_total": end["majflt"] - start["majflt"],
    "mem_get_info": [free, total],
    "memory_reserved": torch.cuda.memory_reserved(),
    "torch": torch.__version__,
}
with open(sys.argv[1], "w") as out:
    json.dump(result, out, indent=1)
print("fullstack_case: ok", json.dumps({s["step"]: s["minflt"] for s in steps}))
