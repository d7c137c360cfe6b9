"""A vLLM-style KV sizer (gpu_memory_utilization): budget = 0.5 x total; the KV cache gets what
the budget leaves after weights and the peak activations of a profiling pass, split over 8
per-layer tensors of [blocks, 2, 16, 8, 128] fp16. Writes what it computed to argv[1]."""

import json
import os
import sys
import time

import torch

MiB = 1 << 20
GPU_MEMORY_UTILIZATION = 0.5
LAYERS = 8
BLOCK_BYTES = 2 * 16 * 8 * 128 * 2  # K and V of 16 tokens, 8 heads of 128, fp16: one layer

weights = [torch.empty(384 * MiB, dtype=torch.uint8, device="cuda") for _ in range(8)]  # 3 GiB
weights_bytes = sum(w.numel() for w in weights)
torch.cuda.reset_peak_memory_stats()
# profiling pass: activations up to 2.5 GiB at the peak, then freed
a = torch.empty(1024 * MiB, dtype=torch.uint8, device="cuda")
b = torch.empty(1536 * MiB, dtype=torch.uint8, device="cuda")
b.fill_(1)
peak = torch.cuda.max_memory_allocated()
del a, b
torch.cuda.synchronize()
torch.cuda.empty_cache()

free, total = torch.cuda.mem_get_info()
budget = int(GPU_MEMORY_UTILIZATION * total)
kv_bytes = budget - peak  # = budget - weights - peak activations
blocks = kv_bytes // (LAYERS * BLOCK_BYTES)
kv = [
    torch.empty((blocks, 2, 16, 8, 128), dtype=torch.float16, device="cuda") for _ in range(LAYERS)
]
torch.cuda.synchronize()
truth = {
    "program": "vllm_style_sizer",
    "rule": "fraction_of_total_minus_used",
    "fraction": GPU_MEMORY_UTILIZATION,
    "free_bytes": free,
    "total_bytes": total,
    "budget_bytes": budget,
    "weights_bytes": weights_bytes,
    "peak_activation_bytes": peak - weights_bytes,
    "used_bytes": peak,
    "kv_bytes_computed": kv_bytes,
    "kv_blocks": blocks,
    "kv_tensor_bytes": [t.numel() * t.element_size() for t in kv],
    "kv_bytes_allocated": sum(t.numel() * t.element_size() for t in kv),
    "memory_reserved": torch.cuda.memory_reserved(),
    "max_memory_reserved": torch.cuda.max_memory_reserved(),
    "t_monotonic_ns": time.monotonic_ns(),
    "pid": os.getpid(),
}
with open(sys.argv[1], "w") as out:
    json.dump(truth, out, indent=1)
