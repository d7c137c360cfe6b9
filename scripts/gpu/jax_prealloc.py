"""JAX as users run it: the first array makes XLA preallocate its pool (0.75 x total by default,
XLA_PYTHON_CLIENT_MEM_FRACTION otherwise). Writes JAX's own memory_stats() to argv[1]."""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp

x = jnp.ones((1024, 1024), dtype=jnp.float32)
(x @ x).block_until_ready()
stats = jax.devices()[0].memory_stats()
fraction = float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75"))
truth = {
    "program": "jax_prealloc",
    "rule": "fraction_of_total",
    "fraction": fraction,
    "mem_fraction_env": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
    "memory_stats": stats,
    "bytes_limit": int(stats["bytes_limit"]),
    "jax": jax.__version__,
    "t_monotonic_ns": time.monotonic_ns(),
    "pid": os.getpid(),
}
with open(sys.argv[1], "w") as out:
    json.dump(truth, out, indent=1, default=str)
