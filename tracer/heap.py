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

import pyarrow as pa

M_MMAP_THRESHOLD = -3  # mallopt(3)
MMAP_THRESHOLD = 128 << 10  # glibc's starting value, no longer raised by frees


def release_freed_memory() -> None:
    """Once, before a recording starts: the allocators hand freed memory back."""
    pa.set_memory_pool(pa.system_memory_pool())
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its own policy
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
