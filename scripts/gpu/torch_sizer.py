"""A TensorRT-LLM-style KV sizer on PyTorch's own allocator (the one PYTORCH_CUDA_ALLOC_CONF
picks: default, expandable_segments:True, backend:cudaMallocAsync): weights, a profiling pass
whose activations are freed, then KV = 0.9 x free (torch.cuda.mem_get_info) split over 8
per-layer tensors. Writes what it computed and what torch says it holds to argv[1]."""

import json
import os
import sys
import time

import torch

MiB = 1 << 20
FRACTION = 0.9  # TensorRT-LLM's free_gpu_memory_fraction default
LAYERS = 8

weights = [torch.empty(256 * MiB, dtype=torch.uint8, device="cuda") for _ in range(4)]
pinned = torch.empty(64 * MiB, dtype=torch.uint8, pin_memory=True)  # cudaHostAlloc
activations = [torch.empty(768 * MiB, dtype=torch.uint8, device="cuda") for _ in range(2)]
activations[0].fill_(1)
small = torch.ones(1000, device="cuda")  # a small-pool segment
del activations
torch.cuda.synchronize()
torch.cuda.empty_cache()  # the activations' segments go back to the driver

free, total = torch.cuda.mem_get_info()
kv_bytes = int(FRACTION * free)
per_layer = kv_bytes // LAYERS // (2 * MiB) * (2 * MiB)
kv = [torch.empty(per_layer, dtype=torch.uint8, device="cuda") for _ in range(LAYERS)]
torch.cuda.synchronize()
t_ns = time.monotonic_ns()  # CLOCK_MONOTONIC, the recording's clock
stats = torch.cuda.memory_stats()
truth = {
    "program": "torch_sizer",
    "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
    "rule": "fraction_of_free",
    "fraction": FRACTION,
    "free_bytes": free,
    "total_bytes": total,
    "kv_bytes_computed": kv_bytes,
    "kv_tensor_bytes": [per_layer] * LAYERS,
    "kv_bytes_allocated": per_layer * LAYERS,
    "memory_reserved": torch.cuda.memory_reserved(),
    "memory_allocated": torch.cuda.memory_allocated(),
    "max_memory_reserved": torch.cuda.max_memory_reserved(),
    "max_memory_allocated": torch.cuda.max_memory_allocated(),
    "num_alloc_retries": stats.get("num_alloc_retries"),
    "pinned_bytes": pinned.numel(),
    "t_monotonic_ns": t_ns,
    "pid": os.getpid(),
    "torch": torch.__version__,
}
with open(sys.argv[1], "w") as out:
    json.dump(truth, out, indent=1)
