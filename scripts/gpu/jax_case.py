"""JAX on the GPU, for `uvmtrace record` with kernel probes and the shim: XLA's start-up
preallocation (device memory), a host -> device transfer and its host staging. Writes what JAX
reported itself (`memory_stats()`), to hold the recording against.

Usage: python jax_case.py RESULT.json
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

MiB = 1 << 20
x = jnp.ones((256 * MiB,), dtype=jnp.uint8)  # device memory from XLA's pool
host = np.ones((256 * MiB,), dtype=np.uint8)
y = jax.device_put(host)  # host -> device copy through the runtime's staging buffers
(x + y).block_until_ready()
stats = jax.devices()[0].memory_stats() or {}
with open(sys.argv[1], "w") as out:
    json.dump({"pid": os.getpid(), "jax": jax.__version__, "memory_stats": stats}, out, indent=1)
print(
    "jax_case: ok", {k: stats.get(k) for k in ("bytes_limit", "bytes_in_use", "peak_bytes_in_use")}
)
