"""Names of the things a recording measures, and how they relate to each other.

The decomposition kinds are a NON-OVERLAPPING split of a cgroup's charged memory, built from the
memcg stat items the kernel tracepoints report (their BTF names):

  anon    NR_ANON_MAPPED                 (v2 memory.stat `anon`, v1 `rss`)
  file    NR_FILE_PAGES minus NR_SHMEM   (page cache proper; NR_FILE_PAGES counts shmem too)
  shmem   NR_SHMEM                       (tmpfs, /dev/shm, shared anonymous mappings)
  kernel  MEMCG_KMEM                     (slab, kernel stacks, page tables, percpu, vmalloc ...)
  sock    MEMCG_SOCK                     (socket buffers)

Everything else (NR_FILE_MAPPED, NR_FILE_DIRTY, the LRU lists, NR_SLAB_*, NR_PAGETABLE,
NR_KERNEL_STACK_KB, NR_ANON_THPS, NR_ANON: the lruvec view of anon ...) is a *subset or another
view* of the five above; those items are shown per item, but never added to a total, so nothing is
counted twice.
"""

from __future__ import annotations

from uvmtrace.recording.cuda_functions import RECORDED, names

# item -> (kind, sign): NR_SHMEM counts once as shmem and is taken out of file.
KIND_PARTS: dict[str, tuple[tuple[str, int], ...]] = {
    "NR_ANON_MAPPED": (("anon", 1),),
    "NR_FILE_PAGES": (("file", 1),),
    "NR_SHMEM": (("shmem", 1), ("file", -1)),
    "MEMCG_KMEM": (("kernel", 1),),
    "MEMCG_SOCK": (("sock", 1),),
}
KINDS = ("file", "anon", "shmem", "kernel", "sock")
KIND_LABEL = {
    "file": "page cache",
    "anon": "anonymous memory",
    "shmem": "shmem/tmpfs",
    "kernel": "kernel memory",
    "sock": "socket buffers",
}

# memory.stat key -> memcg item. v1 keys (`cache`, `rss`, ...) are this cgroup's own pages;
# v2 keys (`file`, `anon`, ...) include all descendants (see reconcile.py).
STAT_KEY_ITEM: dict[str, str] = {
    # cgroup v1
    "cache": "NR_FILE_PAGES",
    "rss": "NR_ANON_MAPPED",
    "rss_huge": "NR_ANON_THPS",
    "mapped_file": "NR_FILE_MAPPED",
    "dirty": "NR_FILE_DIRTY",
    "writeback": "NR_WRITEBACK",
    # both
    "shmem": "NR_SHMEM",
    # cgroup v2
    "anon": "NR_ANON_MAPPED",
    "file": "NR_FILE_PAGES",
    "kernel": "MEMCG_KMEM",
    "sock": "MEMCG_SOCK",
    "file_mapped": "NR_FILE_MAPPED",
    "file_dirty": "NR_FILE_DIRTY",
    "file_writeback": "NR_WRITEBACK",
    "anon_thp": "NR_ANON_THPS",
    "pagetables": "NR_PAGETABLE",
    "kernel_stack": "NR_KERNEL_STACK_KB",
    "percpu": "MEMCG_PERCPU_B",
    "vmalloc": "MEMCG_VMALLOC",
    "slab_reclaimable": "NR_SLAB_RECLAIMABLE_B",
    "slab_unreclaimable": "NR_SLAB_UNRECLAIMABLE_B",
}
V2_ONLY_KEYS = frozenset({"anon", "file", "kernel", "sock", "file_mapped", "file_dirty"})

# The CUDA calls by kind, from the shim's function table (shim/functions.h, through its view in
# recording/, read there by the decoder too). Names without the _v2 suffix.
# What kind of CUDA memory each allocation call holds (cuda_memory.py). A cuMemCreate whose
# location (the shim's `item`, "location TYPE:ID") is not the device (type 1) is pinned host
# memory. cuMemMap maps memory a cuMemCreate already counted; cuMemHostRegister pins memory the
# program already had (counted apart, never as an allocation).
CUDA_MEMORY_KINDS = ("device", "vmm", "pool", "pinned_host", "managed", "registered_host")
DEVICE_MEMORY_KINDS = frozenset({"device", "vmm", "pool"})  # GPU memory on a discrete GPU
VMM_DEVICE_LOCATION = "location 1:"
CUDA_MEMORY_KIND = {f.name: f.memory for f in RECORDED if f.kind in ("alloc", "register")}
# Allocation calls that can size a KV cache.
CUDA_ALLOC_EVENTS = frozenset(names("alloc"))
# Device-only allocations: they take GPU memory and are never charged to a memory cgroup
# (host/pinned/managed ones are: docs/design.md), so they can explain a device-memory signal
# without double counting the charges.
CUDA_DEVICE_ALLOC_EVENTS = frozenset(
    f for f in CUDA_ALLOC_EVENTS if CUDA_MEMORY_KIND[f] in DEVICE_MEMORY_KINDS
)
CUDA_FREE_EVENTS = frozenset(
    f.name for f in RECORDED if f.kind == "free" and f.memory in DEVICE_MEMORY_KINDS
)
# Calls that give back what an allocation of the same address (or VMM handle) took.
CUDA_RELEASE_EVENTS = frozenset(names("free") + names("unregister"))

# Memory queries: event name (normalised) -> signal name.
CUDA_QUERY_SIGNAL = {name: name for name in names("query")}
SIGNAL_MEMFREE = "MemFree (/proc/meminfo)"
SIGNAL_MEMAVAILABLE = "MemAvailable (/proc/meminfo)"
SIGNAL_HEADROOM = "cgroup headroom (memory.* files)"
# Signals that read system memory (MemFree-like). A CUDA/NVML signal reads system memory only on
# a unified-memory GPU.
HOST_QUERIES = frozenset(f.name for f in RECORDED if f.kind == "query" and f.lib == "libc")
SYSTEM_SIGNALS = HOST_QUERIES | {SIGNAL_MEMFREE, SIGNAL_MEMAVAILABLE, SIGNAL_HEADROOM}
DEVICE_SIGNALS = frozenset(names("query")) - HOST_QUERIES

# Fractions frameworks multiply free memory by: every 0.05, and the odd defaults
# (SGLang's mem_fraction_static 0.88, 0.92, 0.98).
# KV-sizing defaults (here, not in sizing.py, so the CLI can show them without importing polars)
DEFAULT_MIN_ALLOC = 256 << 20
DEFAULT_TOLERANCE = 0.003  # |implied fraction - fraction|; block rounding stays far below this
KNOWN_FRACTIONS = tuple(sorted({round(0.05 * k, 2) for k in range(1, 21)} | {0.88, 0.92, 0.98}))

NO_LIMIT = 1 << 60  # v1 reports "no limit" as ~2^63 rounded to a page

VERSION_SUFFIX = r"_v\d+$"  # `cuMemAlloc_v2` is `cuMemAlloc` for analysis


# uvmtrace's own files: the shim's per-process record files and their symbol tables (`*.uvm`,
# `*.uvm.syms`, in a run dir under /.uvmtrace/ inside a container or the `.<output>.uvmtrace` work
# dir next to the output), and the recorder's spool (`<output>.spool/`). Their page cache is the
# tracer's overhead, never the workload's explanation.
OWN_FILE_PATTERN = (
    r"(\.uvm|\.uvm\.syms)$"
    r"|(^|/)\.uvmtrace/"
    r"|/\.[^/]+\.uvmtrace(/|$)"
    r"|\.spool(/|$)"
)


def is_cgroup_memory_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return path.startswith("/sys/fs/cgroup") and name.startswith("memory.")
