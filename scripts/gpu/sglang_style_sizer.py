"""An SGLang-style KV sizer (mem_fraction_static): after the weights, KV = free - (1 - 0.6) x
total (both from torch.cuda.mem_get_info), as tokens of a K and a V buffer per layer (8 layers,
8 heads of 128, fp16), each buffer one tensor. Writes what it computed to argv[1]."""

import json
import os
import sys
import time

import torch

MiB = 1 << 20
MEM_FRACTION_STATIC = 0.6
LAYERS = 8
HEADS, HEAD_DIM = 8, 128
CELL_BYTES = LAYERS * 2 * HEADS * HEAD_DIM * 2  # one token's K and V in every layer

weights = [torch.empty(512 * MiB, dtype=torch.uint8, device="cuda") for _ in range(8)]  # 4 GiB
torch.cuda.synchronize()
torch.cuda.empty_cache()
free, total = torch.cuda.mem_get_info()
rest = free - total * (1 - MEM_FRACTION_STATIC)
tokens = int(rest // CELL_BYTES)
shape = (tokens + 1, HEADS, HEAD_DIM)  # SGLang keeps one padding slot
k = [torch.empty(shape, dtype=torch.float16, device="cuda") for _ in range(LAYERS)]
v = [torch.empty(shape, dtype=torch.float16, device="cuda") for _ in range(LAYERS)]
torch.cuda.synchronize()
sizes = [t.numel() * t.element_size() for t in k + v]
truth = {
    "program": "sglang_style_sizer",
    "rule": "free_minus_fraction_of_total",
    "fraction": MEM_FRACTION_STATIC,
    "free_bytes": free,
    "total_bytes": total,
    "kv_bytes_computed": int(rest),
    "kv_tokens": tokens,
    "kv_tensor_bytes": sizes,
    "kv_bytes_allocated": sum(sizes),
    "weights_bytes": sum(w.numel() for w in weights),
    "memory_reserved": torch.cuda.memory_reserved(),
    "t_monotonic_ns": time.monotonic_ns(),
    "pid": os.getpid(),
}
with open(sys.argv[1], "w") as out:
    json.dump(truth, out, indent=1)
