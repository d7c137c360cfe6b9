"""Turn numpy record arrays from the rings and aggregation maps into recording batches.

Everything is columnar: item numbers become a dictionary array over the kernel's BTF names,
units are a vectorised multiply, strings are dictionary-encoded once per distinct value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from uvmtrace.host import btf
from uvmtrace.probes import event_dtypes as layouts
from uvmtrace.probes import kernlayout
from uvmtrace.recording.schema import make_batch

if TYPE_CHECKING:
    from uvmtrace.probes.pathres import PathResolver

FAULT_BITS = {"present": 1, "write": 2, "user": 4, "fetch": 16}


def text(values: np.ndarray) -> pa.DictionaryArray:
    """Fixed-size NUL-padded C strings -> dictionary<string>, decoding each distinct value once."""
    encoded = pa.array(values, type=pa.binary()).dictionary_encode()
    words = [b.decode("utf-8", "replace") for b in encoded.dictionary.to_pylist()]
    return pa.DictionaryArray.from_arrays(encoded.indices, pa.array(words, pa.string()))


def labels(index: np.ndarray, names: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(names))


class ItemNames:
    """Kernel item numbers -> BTF names and byte units, as lookup arrays."""

    def __init__(self, page_size: int, btf_path: str = btf.VMLINUX_BTF) -> None:
        stats, events = kernlayout.item_names(btf_path)
        self.nstat = max(stats) + 1
        self.nevent = max(events) + 1
        stat_names = [stats.get(i, f"stat_{i}") for i in range(self.nstat)]
        event_names = [events.get(i, f"event_{i}") for i in range(self.nevent)]
        self.names = [*stat_names, *event_names, "unknown"]
        self.unit = np.array([kernlayout.unit_bytes(n, page_size) for n in stat_names], np.int64)

    def index(self, item: np.ndarray, is_event: np.ndarray) -> np.ndarray:
        idx = np.where(is_event, self.nstat + item, item).astype(np.int64)
        bad = (item < 0) | np.where(is_event, item >= self.nevent, item >= self.nstat)
        return np.where(bad, len(self.names) - 1, idx)

    def bytes_of(self, item: np.ndarray, val: np.ndarray) -> np.ndarray:
        unit = self.unit[np.clip(item, 0, self.nstat - 1)]
        return val.astype(np.int64) * unit


def memcg_rows(
    names: ItemNames,
    *,
    ts: np.ndarray,
    cgroup_id: np.ndarray,
    pid: np.ndarray,
    tid: np.ndarray | None,
    item: np.ndarray,
    kind: np.ndarray,
    val: np.ndarray,
    updates: np.ndarray,
    comm: np.ndarray,
) -> list[pa.RecordBatch]:
    """memcg_charge rows (stat updates, bytes) and memcg_event rows (event counts)."""
    out = []
    is_event = kind == layouts.MEMCG_EVENT
    for event, sel in (("memcg_charge", ~is_event), ("memcg_event", is_event)):
        if not sel.any():
            continue
        it = item[sel]
        cols = {
            "ts_ns": ts[sel].astype(np.int64),
            "stream": "kernel",
            "event": event,
            "pid": pid[sel].astype(np.int32),
            "comm": text(comm[sel]),
            "cgroup_id": cgroup_id[sel],
            "item": labels(names.index(it, np.full(it.shape, event == "memcg_event")), names.names),
        }
        if tid is not None:
            cols["tid"] = tid[sel].astype(np.int32)
        if event == "memcg_charge":
            cols["bytes"] = names.bytes_of(it, val[sel])
            cols["count"] = updates[sel].astype(np.int64)
        else:
            cols["count"] = val[sel].astype(np.int64)
        out.append(make_batch(cols))
    return out


def fault_kind(code: np.ndarray) -> pa.DictionaryArray:
    """Access kind from the x86 error code: exec (instruction fetch), write, or read."""
    idx = np.where(code & FAULT_BITS["fetch"], 2, np.where(code & FAULT_BITS["write"], 1, 0))
    return labels(idx, ["read", "write", "exec"])


def fault_rows_agg(keys: np.ndarray, vals: np.ndarray) -> pa.RecordBatch:
    return make_batch(
        {
            "ts_ns": keys["bucket"].astype(np.int64),
            "stream": "kernel",
            "event": "page_fault",
            "pid": keys["pid"].astype(np.int32),
            "comm": text(vals["comm"]),
            "item": fault_kind(keys["code"]),
            "flags": keys["code"].astype(np.int64),
            "count": vals["count"].astype(np.int64),
        }
    )


def fault_rows_raw(rec: np.ndarray) -> pa.RecordBatch:
    return make_batch(
        {
            "ts_ns": rec["ts"].astype(np.int64),
            "stream": "kernel",
            "event": "page_fault",
            "pid": rec["pid"].astype(np.int32),
            "tid": rec["tid"].astype(np.int32),
            "addr": rec["addr"],
            "item": fault_kind(rec["code"]),
            "flags": rec["code"].astype(np.int64),
            "count": np.ones(rec.size, np.int64),
        }
    )


def kernel_dev_to_user(dev: np.ndarray) -> np.ndarray:
    """Kernel-internal dev_t (major << 20 | minor) -> the st_dev encoding user space sees."""
    dev = dev.astype(np.uint64)
    major, minor = dev >> np.uint64(20), dev & np.uint64(0xFFFFF)  # major < 4096 here
    return (
        (major << np.uint64(8))
        | (minor & np.uint64(0xFF))
        | ((minor >> np.uint64(8)) << np.uint64(20))
    )


def filemap_rows(
    keys: np.ndarray, vals: np.ndarray, page_size: int, paths: list[str | None]
) -> pa.RecordBatch:
    return make_batch(
        {
            "ts_ns": keys["bucket"].astype(np.int64),
            "stream": "kernel",
            "event": labels(keys["kind"], list(layouts.FILEMAP_EVENTS)),
            "pid": keys["pid"].astype(np.int32),
            "comm": text(vals["comm"]),
            "dev": kernel_dev_to_user(keys["dev"].astype(np.uint64)),
            "inode": keys["ino"],
            "path": pa.array(paths, pa.string()),
            "bytes": vals["sum"].astype(np.int64) * page_size,
            "count": vals["count"].astype(np.int64),
        }
    )


PROT = ("---", "r--", "-w-", "rw-", "--x", "r-x", "-wx", "rwx")
MAP_SHARED = 0x01  # MAP_SHARED and MAP_SHARED_VALIDATE (0x03) both have it; MAP_PRIVATE is 0x02
MAP_ANONYMOUS = 0x20


def mapping_rows(rec: np.ndarray, paths: list[str | None]) -> pa.RecordBatch:
    call = rec["call"]
    is_mmap = call == layouts.MAPPING_CALLS.index("mmap")
    ok = (rec["ret"] >= 0) | (rec["ret"] < -4095)  # mmap returns addresses above 2^63 on some
    addr = np.where(is_mmap & ok, rec["ret"].view(np.uint64), rec["addr"])
    prot_idx = (rec["prot"] & 7) * 2 + ((rec["flags"] & MAP_SHARED) == 0)
    prot_names = [p + s for p in PROT for s in ("s", "p")]
    item = pa.DictionaryArray.from_arrays(
        pa.array(prot_idx.astype(np.int32), mask=~is_mmap), pa.array(prot_names)
    )
    length = np.where(call == layouts.MAPPING_CALLS.index("mremap"), rec["arg"], rec["len"])
    return make_batch(
        {
            **task_columns(rec, labels(call, list(layouts.MAPPING_CALLS))),
            "addr": addr,
            "bytes": pa.array(
                length.astype(np.int64), mask=call == layouts.MAPPING_CALLS.index("brk")
            ),
            "flags": rec["flags"].astype(np.int64),
            "item": item,
            "result": rec["ret"],
            "path": pa.array(paths, pa.string()),
        }
    )


def is_memory_query_path(path: str) -> bool:
    return path == "/proc/meminfo" or (
        path.startswith("/sys/fs/cgroup/") and os.path.basename(path).startswith("memory.")
    )


def task_columns(rec: np.ndarray, event: object, stream: str = "kernel") -> dict[str, object]:
    """The columns every ring-buffer record carries: when, what, and which task."""
    return {
        "ts_ns": rec["ts"].astype(np.int64),
        "stream": stream,
        "event": event,
        "pid": rec["pid"].astype(np.int32),
        "tid": rec["tid"].astype(np.int32),
        "comm": text(rec["comm"]),
    }


def query_rows(rec: np.ndarray) -> list[pa.RecordBatch]:
    out = []
    sysinfo = rec[rec["kind"] == layouts.QUERY_SYSINFO]
    if sysinfo.size:
        ok = sysinfo["ret"] == 0
        out.append(
            make_batch(
                {
                    **task_columns(sysinfo, "sysinfo"),
                    "free_bytes": pa.array(sysinfo["free"].astype(np.int64), mask=~ok),
                    "total_bytes": pa.array(sysinfo["total"].astype(np.int64), mask=~ok),
                    "result": sysinfo["ret"],
                }
            )
        )
    opens = rec[rec["kind"] == layouts.QUERY_OPENAT]
    if opens.size:
        paths = np.array([p.decode("utf-8", "replace") for p in opens["path"]], dtype=object)
        keep = np.array([is_memory_query_path(p) for p in paths], dtype=bool)
        if keep.any():
            o = opens[keep]
            out.append(
                make_batch(
                    {
                        **task_columns(o, "openat"),
                        "path": list(paths[keep]),
                        "result": o["ret"],
                    }
                )
            )
    return out


def proc_rows(rec: np.ndarray, hierarchy_names: Mapping[int, str]) -> list[pa.RecordBatch]:
    out = []
    kind = rec["kind"]
    procs = rec[kind != layouts.PROC_MKDIR]
    if procs.size:
        k = procs["kind"]
        is_exit = k == layouts.PROC_EXIT
        is_fork = k == layouts.PROC_FORK
        is_exec = k == layouts.PROC_EXEC
        filenames = [t.decode("utf-8", "replace") for t in procs["text"]]
        out.append(
            make_batch(
                {
                    "ts_ns": procs["ts"].astype(np.int64),
                    "stream": "proc",
                    "event": labels(k, ["fork", "exec", "exit"]),
                    "pid": procs["pid"].astype(np.int32),
                    "tid": pa.array(procs["tid"].astype(np.int32), mask=~is_fork),
                    "comm": text(procs["comm"]),
                    "count": pa.array(procs["ppid"].astype(np.int64), mask=~is_fork),
                    "result": pa.array(
                        procs["code"].astype(np.int64),
                        mask=~is_exit | (procs["code"] == layouts.NO_CODE),
                    ),
                    "text": pa.array(filenames, pa.string(), mask=~is_exec),
                }
            )
        )
    mk = rec[kind == layouts.PROC_MKDIR]
    if mk.size:
        out.append(
            make_batch(
                {
                    "ts_ns": mk["ts"].astype(np.int64),
                    "stream": "kernel",
                    "event": "cgroup_mkdir",
                    "pid": mk["pid"].astype(np.int32),
                    "comm": text(mk["comm"]),
                    "cgroup_id": mk["cgroup_id"],
                    "path": [t.decode("utf-8", "replace") for t in mk["text"]],
                    "item": [hierarchy_names.get(int(r), str(int(r))) for r in mk["root"]],
                }
            )
        )
    return out


# -- one decoder per map, as the registry names them: (context, records) -> batches ------------


@dataclass
class Context:
    """What decoding needs beyond the records: kernel item names, the page size, the file
    path resolver (its caches live as long as the tracer) and cgroup hierarchy names."""

    names: ItemNames
    page_size: int
    paths: PathResolver
    hierarchies: Mapping[int, str]


def proc_records(ctx: Context, rec: np.ndarray) -> list[pa.RecordBatch]:
    return proc_rows(rec, ctx.hierarchies)


def memcg_records(ctx: Context, rec: np.ndarray) -> list[pa.RecordBatch]:
    return memcg_rows(
        ctx.names,
        ts=rec["ts"],
        cgroup_id=rec["cgroup_id"],
        pid=rec["pid"],
        tid=rec["tid"],
        item=rec["item"],
        kind=rec["kind"],
        val=rec["val"],
        updates=np.ones(rec.size, np.int64),
        comm=rec["comm"],
    )


def memcg_sums(ctx: Context, keys: np.ndarray, vals: np.ndarray) -> list[pa.RecordBatch]:
    return memcg_rows(
        ctx.names,
        ts=keys["bucket"],
        cgroup_id=keys["cgroup_id"],
        pid=keys["pid"],
        tid=None,
        item=keys["item"],
        kind=keys["kind"],
        val=vals["sum"],
        updates=vals["count"],
        comm=vals["comm"],
    )


def fault_records(ctx: Context, rec: np.ndarray) -> list[pa.RecordBatch]:
    return [fault_rows_raw(rec)]


def fault_sums(ctx: Context, keys: np.ndarray, vals: np.ndarray) -> list[pa.RecordBatch]:
    return [fault_rows_agg(keys, vals)]


def mapping_records(ctx: Context, rec: np.ndarray) -> list[pa.RecordBatch]:
    return [mapping_rows(rec, ctx.paths.mappings(rec))]


def filemap_sums(ctx: Context, keys: np.ndarray, vals: np.ndarray) -> list[pa.RecordBatch]:
    dev = kernel_dev_to_user(keys["dev"].astype(np.uint64))
    paths = ctx.paths.files(keys["pid"], dev, keys["ino"])
    return [filemap_rows(keys, vals, ctx.page_size, paths)]


def query_records(ctx: Context, rec: np.ndarray) -> list[pa.RecordBatch]:
    return query_rows(rec)
