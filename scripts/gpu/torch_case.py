"""PyTorch under the shim: what torch itself reports, for comparison with the records."""

import json
import os
import sys

import torch

MiB = 1 << 20
queries = [list(torch.cuda.mem_get_info())]
a = torch.empty(256 * MiB, dtype=torch.uint8, device="cuda")
b = torch.empty(1024 * MiB, dtype=torch.uint8, device="cuda")
c = torch.empty(3 * MiB, dtype=torch.uint8, device="cuda")
small = torch.ones(100, device="cuda")  # small-pool segment (2 MiB)
del b
torch.cuda.empty_cache()  # the 1 GiB segment goes back to the driver: a cuMemFree
d = torch.empty(512 * MiB, dtype=torch.uint8, device="cuda")
d.fill_(1)
pinned = torch.empty(8 * MiB, dtype=torch.uint8, pin_memory=True)  # cudaHostAlloc
torch.cuda.synchronize()
queries.append(list(torch.cuda.mem_get_info()))
result = {
    "pid": os.getpid(),
    "mem_get_info": queries,
    "memory_reserved": torch.cuda.memory_reserved(),
    "memory_allocated": torch.cuda.memory_allocated(),
    "pinned_ptr": pinned.data_ptr(),
    "torch": torch.__version__,
}
with open(sys.argv[1], "w") as out:
    json.dump(result, out)
