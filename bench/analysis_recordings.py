"""Large synthetic recordings shaped like what `uvmtrace record --raw` writes for an LLM server.

A real 10-million-event recording is a `--raw` one (aggregated runs write a few thousand rows a
second): almost all rows are raw `memcg_charge` updates (one per stat update: the page's anon or
file item, its LRU list, the mapped counter, slab and page tables in bytes, THP folios of 2 MiB)
and raw `page_fault` rows (one per fault, with tid and address). Around them, as the recorder
writes them:
  - samples every 100 ms: all ~55 /proc/meminfo keys, the ~40 v1 memory.stat keys of each target
    cgroup (values following the charges, so reconciliation has real work), usage and limit;
  - page-cache pages per file and 100 ms bucket (`filemap_add`, aggregated even in raw mode) while
    the weights are read, and the mmaps of the weight files;
  - a few thousand anonymous mmaps/munmaps (allocator arenas), a handful of them large;
  - CUDA: a few memory queries, the weights' allocations, one KV-cache allocation of 0.9 x free,
    a few hundred small caching-allocator segments and their frees;
  - proc: exec, a few forks, the exits and the final /proc fault counters.
The `docker` side adds the container's cgroup and more page cache (docs/design.md tells the story).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from uvmtrace.recording.schema import make_batch
from uvmtrace.recording.writer import RecordingWriter

GIB = 1 << 30
MIB = 1 << 20
S = 1_000_000_000
TICK = S // 10  # sampler interval and kernel bucket: 100 ms
T0 = 10_000 * S
PAGE = 4096

# memcg items of one raw update, with their share of updates and unit (pages or bytes)
CHARGE_ITEMS = [
    ("NR_ANON_MAPPED", 0.22),
    ("NR_ACTIVE_ANON", 0.06),
    ("NR_INACTIVE_ANON", 0.14),
    ("NR_FILE_PAGES", 0.14),
    ("NR_INACTIVE_FILE", 0.10),
    ("NR_ACTIVE_FILE", 0.04),
    ("NR_FILE_MAPPED", 0.06),
    ("MEMCG_KMEM", 0.08),
    ("NR_SLAB_UNRECLAIMABLE_B", 0.06),
    ("NR_SLAB_RECLAIMABLE_B", 0.03),
    ("NR_PAGETABLE", 0.03),
    ("NR_SHMEM", 0.02),
    ("NR_ANON_THPS", 0.01),
    ("MEMCG_SOCK", 0.01),
]
MEMINFO_KEYS = [
    "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active",
    "Inactive", "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)", "Unevictable",
    "Mlocked", "SwapTotal", "SwapFree", "Zswap", "Zswapped", "Dirty", "Writeback", "AnonPages",
    "Mapped", "Shmem", "KReclaimable", "Slab", "SReclaimable", "SUnreclaim", "KernelStack",
    "PageTables", "SecPageTables", "NFS_Unstable", "Bounce", "WritebackTmp", "CommitLimit",
    "Committed_AS", "VmallocTotal", "VmallocUsed", "VmallocChunk", "Percpu", "HardwareCorrupted",
    "AnonHugePages", "ShmemHugePages", "ShmemPmdMapped", "FileHugePages", "FilePmdMapped",
    "Unaccepted", "HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp",
    "Hugepagesize", "Hugetlb", "DirectMap4k", "DirectMap2M", "DirectMap1G",
]  # fmt: skip
# v1 memory.stat keys -> the charge item whose running sum they follow (None: a constant)
STAT_KEYS: list[tuple[str, str | None]] = [
    ("cache", "NR_FILE_PAGES"), ("rss", "NR_ANON_MAPPED"), ("rss_huge", "NR_ANON_THPS"),
    ("shmem", "NR_SHMEM"), ("mapped_file", "NR_FILE_MAPPED"), ("dirty", None),
    ("writeback", None), ("swap", None), ("pgpgin", None), ("pgpgout", None), ("pgfault", None),
    ("pgmajfault", None), ("inactive_anon", "NR_INACTIVE_ANON"), ("active_anon", "NR_ACTIVE_ANON"),
    ("inactive_file", "NR_INACTIVE_FILE"), ("active_file", "NR_ACTIVE_FILE"),
    ("unevictable", None), ("hierarchical_memory_limit", None),
    ("hierarchical_memsw_limit", None),
]  # fmt: skip
STAT_KEYS += [(f"total_{k}", item) for k, item in STAT_KEYS if not k.startswith("hier")]


def _dict(values: list[str], codes: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32), mask=mask), pa.array(values, pa.string())
    )


class Story:
    """The fixed landmarks of one run: who, where, when, how much."""

    def __init__(self, n_events: int, docker: bool) -> None:
        self.docker = docker
        # a raw run writes ~80k bulk rows a second; 30 s at least, like a short benchmark
        self.duration = max(30 * S, n_events * S // 80_000)
        self.ticks = self.duration // TICK
        self.cgroups = [22, 11] if docker else [11]  # container, the user's session
        self.pids = np.array([4100, 4101, 4102, 4103, 4104] if docker else [3100, 3101, 3102])
        self.comms = ["trtllm-bench", "python3", "tokenizer", "dockerd", "containerd-shim"]
        self.load_end = self.duration * 3 // 10  # weights read in the first 30%
        self.query_at = self.duration * 4 // 10
        self.shards = [f"/models/llama/model-{i:05d}-of-00008.safetensors" for i in range(1, 9)]
        self.cache_bytes = (16 if docker else 2) * GIB  # page cache of the weights kept
        self.free_at_query = (80 - (27 if docker else 4)) * GIB + 123_456_789


def _bulk(rng: np.random.Generator, story: Story, n: int, t_lo: int, t_hi: int) -> pa.RecordBatch:
    """Raw memcg updates (60%), raw page faults (38%), memcg events (2%) between t_lo and t_hi."""
    ts = np.sort(rng.integers(t_lo, t_hi, size=n)).astype(np.int64)
    kind = rng.choice(3, size=n, p=[0.60, 0.38, 0.02])
    charge, fault = kind == 0, kind == 1
    pid_idx = rng.choice(len(story.pids), size=n, p=_weights(len(story.pids)))
    pid = story.pids[pid_idx].astype(np.int32)
    tid = (pid + rng.integers(0, 48, size=n) * (pid_idx == 0)).astype(np.int32)
    items = [i for i, _ in CHARGE_ITEMS]
    item_share = np.array([s for _, s in CHARGE_ITEMS])
    item_idx = rng.choice(len(items), size=n, p=item_share / item_share.sum())
    loading = ts < T0 + story.load_end
    # while the weights load, pages are mostly charged; later they churn around a level
    grow = np.where(loading, 0.8, 0.5 + 0.02 * story.docker)
    sign = np.where(rng.random(n) < grow, 1, -1)
    size = np.full(n, PAGE, np.int64)
    size = np.where(rng.random(n) < 0.04, 16 * PAGE, size)  # large folios of file pages
    slab = np.isin(item_idx, [items.index("NR_SLAB_UNRECLAIMABLE_B"), items.index("MEMCG_SOCK")])
    size = np.where(slab, rng.integers(1, 64, size=n) * 64, size)
    size = np.where(item_idx == items.index("NR_ANON_THPS"), 512 * PAGE, size)
    # reading the weights: page cache charged in folios adding up to what filemap_add shows
    weights = loading & (item_idx == items.index("NR_FILE_PAGES"))
    if weights.any():
        per_row = story.cache_bytes * S // story.load_end // int(weights.sum())
        size = np.where(weights, max(per_row - per_row % PAGE, PAGE), size)
        sign = np.where(weights, 1, sign)
    cg_idx = np.where(rng.random(n) < 0.97, 0, len(story.cgroups) - 1)
    fault_items = ["read", "write", "exec"]
    fault_kind = rng.choice(3, size=n, p=[0.3, 0.68, 0.02])
    event_items = ["PGFAULT", "PGMAJFAULT", "PGACTIVATE"]
    item_codes = np.where(
        charge, item_idx, np.where(fault, len(items) + fault_kind, len(items) + 3 + (ts % 3))
    )
    comm_idx = np.minimum(pid_idx, len(story.comms) - 1)
    return make_batch(
        {
            "ts_ns": ts,
            "stream": _dict(["kernel"], np.zeros(n)),
            "event": _dict(["memcg_charge", "page_fault", "memcg_event"], kind),
            "pid": pid,
            "tid": tid,
            "comm": _dict(story.comms, comm_idx),
            "cgroup_id": pa.array(np.array(story.cgroups, np.uint64)[cg_idx], mask=fault),
            "item": _dict(items + fault_items + event_items, item_codes),
            "bytes": pa.array(sign * size, mask=~charge),
            "addr": pa.array(
                (0x7F00_0000_0000 + rng.integers(0, 1 << 30, size=n) * PAGE).astype(np.uint64),
                mask=~fault,
            ),
            "flags": pa.array(4 + 2 * (fault_kind == 1) + 16 * (fault_kind == 2), mask=~fault),
            "count": np.ones(n, np.int64),
        },
        num_rows=n,
    )


def _weights(k: int) -> np.ndarray:
    w = np.array([8.0] + [1.0] * (k - 1))  # the server process does most of the work
    return w / w.sum()


def _samples(story: Story, tick: int, level: dict[str, int], meminfo: np.ndarray) -> pa.RecordBatch:
    ts = T0 + tick * TICK
    events, items, values, cgs = [], [], [], []
    for key, value in zip(MEMINFO_KEYS, meminfo, strict=True):
        events.append("meminfo"), items.append(key), values.append(int(value)), cgs.append(None)
    cg = story.cgroups[0]
    for key, item in STAT_KEYS:
        v = max(level.get(item, 0), 0) if item else 0
        events.append("memory.stat"), items.append(key), values.append(v), cgs.append(cg)
    usage = sum(max(level.get(i, 0), 0) for i in ("NR_FILE_PAGES", "NR_ANON_MAPPED", "MEMCG_KMEM"))
    for event, item, value in (
        ("memory.current", "memory.usage_in_bytes", usage),
        ("memory.limit", "memory.limit_in_bytes", 96 * GIB if story.docker else 1 << 62),
    ):
        events.append(event), items.append(item), values.append(value), cgs.append(cg)
    return make_batch(
        {
            "ts_ns": ts,
            "stream": "sample",
            "event": events,
            "item": items,
            "bytes": values,
            "cgroup_id": pa.array(cgs, pa.uint64()),
        }
    )


def _landmarks(rng: np.random.Generator, story: Story) -> list[pa.RecordBatch]:
    """proc, CUDA, mapping and page-cache events: few rows, all the phases."""
    pid = int(story.pids[0])
    out = []
    # proc: exec of the server, forks of its helpers, exits
    out.append(
        make_batch(
            {
                "ts_ns": [T0 + i * 1000 for i in range(len(story.pids))],
                "stream": "proc",
                "event": ["exec"] + ["fork"] * (len(story.pids) - 1),
                "pid": story.pids.astype(np.int32),
                "comm": story.comms[: len(story.pids)],
                "text": ["/usr/bin/trtllm-bench"] + [None] * (len(story.pids) - 1),
            }
        )
    )
    # page cache of the weight shards, per file and 100 ms bucket while loading
    buckets = np.arange(0, story.load_end, TICK)
    shard = (buckets * len(story.shards) // story.load_end).astype(np.int32)
    per_bucket = story.cache_bytes // len(buckets)
    per_bucket -= per_bucket % PAGE
    out.append(
        make_batch(
            {
                "ts_ns": T0 + buckets,
                "stream": "kernel",
                "event": "filemap_add",
                "pid": pid,
                "comm": story.comms[0],
                "path": _dict(story.shards, shard),
                "bytes": np.full(len(buckets), per_bucket),
                "count": np.full(len(buckets), per_bucket // PAGE),
            }
        )
    )
    # mmaps: the shards, then allocator arenas (a few large), with their munmaps
    n_map = 2000
    t_map = np.sort(rng.integers(0, story.duration, size=n_map)) + T0
    length = np.where(rng.random(n_map) < 0.002, 2 * GIB, 64 * MIB)
    event = np.where(np.arange(n_map) % 2 == 0, 0, 1)
    out.append(
        make_batch(
            {
                "ts_ns": np.concatenate([T0 + np.arange(len(story.shards)) * S, t_map]),
                "stream": "kernel",
                "event": _dict(
                    ["mmap", "munmap"], np.concatenate([np.zeros(len(story.shards)), event])
                ),
                "pid": pid,
                "tid": pid,
                "comm": story.comms[0],
                "bytes": np.concatenate([np.full(len(story.shards), 2 * GIB), length]),
                "addr": (0x7E00_0000_0000 + np.arange(n_map + len(story.shards)) * GIB).astype(
                    np.uint64
                ),
                "flags": np.concatenate([np.full(len(story.shards), 0x01), np.full(n_map, 0x22)]),
                "result": 0,
                "path": pa.array(story.shards + [None] * n_map, pa.string()),
            }
        )
    )
    # CUDA: queries, weights, the KV cache sized as 0.9 x free, small segments and frees
    free = story.free_at_query
    q = T0 + story.query_at
    calls = [("cuInit", T0 + 2 * S, None, None)]
    calls += [("cuMemGetInfo", T0 + 3 * S, None, 79 * GIB), ("cuMemGetInfo", q, None, free)]
    calls += [("cuMemAlloc_v2", T0 + 4 * S + i * S // 10, 2 * GIB, None) for i in range(8)]
    calls += [("cuMemAlloc_v2", q + S // 10, int(0.9 * free), None)]
    small = rng.integers(T0 + 4 * S, T0 + story.duration, size=400)
    calls += [("cuMemAlloc_v2", int(t), 20 * MIB, None) for t in small]
    calls += [("cuMemFree_v2", int(t) + S, None, None) for t in small[:300]]
    addrs = [0x7F00_0000_0000 + i * GIB for i in range(len(calls))]
    addrs[-300:] = addrs[-700:-400]  # the frees name the small segments' pointers
    out.append(
        make_batch(
            {
                "ts_ns": [t for _, t, _, _ in calls],
                "stream": "cuda",
                "event": [e for e, _, _, _ in calls],
                "pid": pid,
                "tid": pid,
                "bytes": pa.array([b for _, _, b, _ in calls], pa.int64()),
                "free_bytes": pa.array([f for _, _, _, f in calls], pa.int64()),
                "total_bytes": pa.array(
                    [96 * GIB if f is not None else None for _, _, _, f in calls], pa.int64()
                ),
                "addr": pa.array(addrs, pa.uint64()),
                "result": 0,
                "caller": "libtorch_cuda.so!c10::cuda::CUDACachingAllocator",
            }
        )
    )
    # the kernel's view of the same sizing query (glibc sysconf -> sysinfo)
    out.append(
        make_batch(
            {
                "ts_ns": [q + 1000],
                "stream": "kernel",
                "event": "sysinfo",
                "pid": pid,
                "tid": pid,
                "free_bytes": [free],
                "total_bytes": [96 * GIB],
                "result": 0,
            }
        )
    )
    end = T0 + story.duration
    out.append(
        make_batch(
            {
                "ts_ns": [end - 1000] * (2 * len(story.pids)) + [end] * len(story.pids),
                "stream": "proc",
                "event": ["proc_faults"] * (2 * len(story.pids)) + ["exit"] * len(story.pids),
                "pid": np.concatenate([np.repeat(story.pids, 2), story.pids]).astype(np.int32),
                "item": ["minflt", "majflt"] * len(story.pids) + [None] * len(story.pids),
                "count": pa.array(
                    [1_000_000, 10] * len(story.pids) + [None] * len(story.pids), pa.int64()
                ),
                "result": pa.array([None] * (2 * len(story.pids)) + [0] * len(story.pids)),
            }
        )
    )
    return out


def generate(path: Path, n_events: int, *, docker: bool, seed: int) -> Path:
    """Write a recording of about `n_events` rows to `path` through the real writer."""
    rng = np.random.default_rng(seed)
    story = Story(n_events, docker)
    cgroups = {"11": {"path": "/user.slice/user-0.slice/session-1.scope", "hierarchy": "memory"}}
    if docker:
        cid = "3f2a9c0d11e7" + "ab" * 26
        cgroups["22"] = {
            "path": f"/docker/{cid}",
            "hierarchy": "memory",
            "container_id": cid,
            "container_name": "trt",
            "target": True,
            "created": True,
        }
    meta = {
        "command": ["docker", "run", "trt", "trtllm-bench"] if docker else ["trtllm-bench"],
        "cgroup_version": 1,
        "cgroups": cgroups,
        "target_cgroups": [story.cgroups[0]],
        "gpu": {"unified_memory": True, "devices": []},
        "raw": True,
        "bucket_ns": TICK,
        "interval_s": 0.1,
        "lost": {},
        "page_size": PAGE,
    }
    writer = RecordingWriter(path, meta, spool=False)
    for batch in _landmarks(rng, story):
        writer.write(batch)
    n_samples = story.ticks * (len(MEMINFO_KEYS) + len(STAT_KEYS) + 2)
    n_bulk = max(n_events - n_samples - 3000, 0)
    # one second at a time, as the recorder drains its rings: bulk rows, then that second's samples
    level: dict[str, int] = {}
    seconds = story.duration // S
    meminfo = np.linspace(2 * GIB, 80 * GIB, len(MEMINFO_KEYS)).astype(np.int64)
    for sec in range(seconds):
        lo, hi = n_bulk * sec // seconds, n_bulk * (sec + 1) // seconds
        batch = _bulk(rng, story, hi - lo, T0 + sec * S, T0 + (sec + 1) * S)
        writer.write(batch)
        sums = (
            pa.table({"item": batch.column("item").cast(pa.string()), "b": batch.column("bytes")})
            .group_by("item")
            .aggregate([("b", "sum")])
            .to_pylist()
        )
        for row in sums:
            if row["b_sum"] is not None:
                level[row["item"]] = level.get(row["item"], 0) + row["b_sum"]
        for k in range(10):
            writer.write(_samples(story, sec * 10 + k + 1, level, meminfo - sec * MIB))
    return writer.close()
