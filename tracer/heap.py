"""Keep the recorder's heap from holding on to what it freed.

A recording turns every drain of the probes into Arrow batches and every 65,536 rows into a
Parquet row group: megabytes allocated and freed many times a second. Arrow's default pool
(mimalloc in pyarrow's wheels) and glibc's malloc, whose mmap threshold rises to the largest
block freed so far, both keep such freed memory for reuse; at 700 k rows/s that was ~100 MB more
RSS than the rows in flight need (docs/performance.md, "Recorder memory"). So the recorder
allocates Arrow buffers with malloc, and large blocks always come from and go back to the
kernel (a fixed mmap threshold).
"""

from __future__ import annotations

import contextlib
import ctypes
import os

M_MMAP_THRESHOLD = -3  # mallopt(3)
MMAP_THRESHOLD = 128 << 10  # glibc's starting value, no longer raised by frees
# Arrow's C++ code reads it once, when pyarrow loads: its Parquet and IPC writers allocate from
# that pool whatever pa.set_memory_pool says (mimalloc kept ~48 MB of a --raw recording's RSS).
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def release_freed_memory() -> None:
    """Before a recording starts, and before pyarrow is first imported where possible: the
    allocators hand freed memory back. The environment variable is set only while pyarrow
    loads, so the traced command inherits the environment as it was."""
    saved = os.environ.get(ARROW_POOL_ENV)
    os.environ[ARROW_POOL_ENV] = "system"
    try:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())  # pyarrow loaded earlier: its Python side
    finally:
        if saved is None:
            del os.environ[ARROW_POOL_ENV]
        else:
            os.environ[ARROW_POOL_ENV] = saved
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its own policy
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
