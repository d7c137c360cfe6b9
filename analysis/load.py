"""Loads the parts of one recording that analysis needs, each as a small eager frame.

A 10-million-event recording is mostly `memcg_charge` and `page_fault` rows; every frame here is
a filtered, column-pruned scan of the Parquet file, so only the bytes a question needs are read.
A recording without some stream still loads: its frames are empty and `missing` says what the
report cannot tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from uvmtrace.analysis.items import VERSION_SUFFIX
from uvmtrace.analysis.reader import Recording, open_recording
from uvmtrace.recording.errors import RecordingError

_STR = pl.String


@dataclass
class RunData:
    recording: Recording
    t0_ns: int
    t_end_ns: int
    streams: set[str]
    charges: pl.DataFrame  # memcg_charge: ts_ns, cgroup_id, item, bytes, pid, comm
    files: pl.DataFrame  # filemap_add/delete: ts_ns, event, cgroup_id, path, bytes, pid
    mappings: pl.DataFrame  # mmap/munmap/...: ts_ns, event, pid, bytes, path, flags, result
    calls: pl.DataFrame  # cuda stream + kernel sysinfo/openat: the queries and allocations
    samples: pl.DataFrame  # sample stream
    proc: pl.DataFrame  # proc stream
    logs: pl.DataFrame  # log stream
    fault_counts: pl.DataFrame  # page_fault summed per pid: pid, faults
    missing: list[str] = field(default_factory=list)

    @property
    def metadata(self) -> dict[str, Any]:
        return self.recording.metadata

    @property
    def path(self) -> Path:
        return self.recording.path

    def rel_s(self, ts_ns: int | None) -> float | None:
        return None if ts_ns is None else (ts_ns - self.t0_ns) / 1e9

    def cgroup_name(self, cgroup_id: int | None) -> str:
        """A container's name (or short id), else the cgroup path, else the id."""
        if cgroup_id is None:
            return "no cgroup"
        info = (self.metadata.get("cgroups") or {}).get(str(cgroup_id)) or {}
        if info.get("container_name"):
            return f"container {info['container_name']}"
        if info.get("container_id"):
            return f"container {str(info['container_id'])[:12]}"
        if info.get("path"):
            return str(info["path"])
        return f"cgroup {cgroup_id}"

    def cgroup_path(self, cgroup_id: int | None) -> str | None:
        info = (self.metadata.get("cgroups") or {}).get(str(cgroup_id)) or {}
        return info.get("path")


def _events(lf: pl.LazyFrame, stream: str, events: list[str] | None = None) -> pl.LazyFrame:
    cond = pl.col("stream") == stream
    if events is not None:
        cond = cond & pl.col("event").cast(_STR).is_in(events)
    return lf.filter(cond)


def load_run(path: str | Path) -> RunData:
    rec = open_recording(path)
    lf = rec.scan()
    ev = pl.col("event").cast(_STR)
    queries = [
        _events(lf, "kernel", ["memcg_charge"]).select(
            "ts_ns",
            "cgroup_id",
            pl.col("item").cast(_STR),
            "bytes",
            "pid",
            pl.col("comm").cast(_STR),
        ),
        _events(lf, "kernel", ["filemap_add", "filemap_delete"]).select(
            "ts_ns", ev.alias("event"), "cgroup_id", pl.col("path").cast(_STR), "bytes", "pid"
        ),
        _events(lf, "kernel", ["mmap", "munmap", "mremap", "brk"]).select(
            "ts_ns",
            ev.alias("event"),
            "pid",
            "bytes",
            pl.col("path").cast(_STR),
            "flags",
            "result",
        ),
        lf.filter(
            (pl.col("stream") == "cuda")
            | ((pl.col("stream") == "kernel") & ev.is_in(["sysinfo", "openat"]))
        ).select(
            "ts_ns",
            pl.col("stream").cast(_STR),
            ev.alias("event"),
            "pid",
            "bytes",
            "addr",
            "free_bytes",
            "total_bytes",
            "result",
            pl.col("path").cast(_STR),
            pl.col("caller").cast(_STR),
        ),
        _events(lf, "sample").select(
            "ts_ns",
            ev.alias("event"),
            "cgroup_id",
            pl.col("item").cast(_STR),
            "bytes",
            "free_bytes",
            "total_bytes",
        ),
        _events(lf, "proc").select(
            "ts_ns",
            ev.alias("event"),
            "pid",
            "tid",
            pl.col("item").cast(_STR),
            "count",
            "result",
            "text",
            pl.col("comm").cast(_STR),
        ),
        _events(lf, "log").select(
            "ts_ns", ev.alias("event"), pl.col("item").cast(_STR), "bytes", "text"
        ),
        _events(lf, "kernel", ["page_fault"])
        .group_by("pid")
        .agg(pl.col("count").fill_null(1).sum().alias("faults")),
        lf.select(
            pl.col("ts_ns").min().alias("t0"),
            pl.col("ts_ns").max().alias("t1"),
            pl.col("stream").cast(_STR).unique().implode().alias("streams"),
        ),
    ]
    try:
        (charges, files, mappings, calls, samples, proc, logs, faults, span) = pl.collect_all(
            queries
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise RecordingError(f"{rec.path}: unreadable recording ({exc})") from None

    # `cuMemAlloc_v2` and `cuMemAlloc` are one call for analysis.
    calls = calls.with_columns(pl.col("event").str.replace(VERSION_SUFFIX, "").alias("call"))
    streams = (
        set(span["streams"][0].to_list()) if span.height and span["t0"][0] is not None else set()
    )
    t0 = span["t0"][0] if span.height and span["t0"][0] is not None else 0
    t1 = span["t1"][0] if span.height and span["t1"][0] is not None else t0
    run = RunData(
        recording=rec,
        t0_ns=int(t0),
        t_end_ns=int(t1),
        streams=streams,
        charges=charges,
        files=files,
        mappings=mappings,
        calls=calls,
        samples=samples,
        proc=proc,
        logs=logs,
        fault_counts=faults,
    )
    run.missing = _missing(run)
    return run


def _missing(run: RunData) -> list[str]:
    """What this recording cannot tell, in words a reader acts on."""
    out: list[str] = []
    if not run.recording.num_rows:
        out.append("the recording holds no events")
    if "kernel" not in run.streams:
        out.append(
            "no kernel stream: memory charges, page faults and page cache were not traced "
            "(was `record` run as root with eBPF?)"
        )
    elif run.charges.is_empty():
        out.append("no memcg_charge events: charges by cgroup and kind are unknown")
    if "cuda" not in run.streams:
        out.append("no cuda stream: CUDA queries and allocations were not traced")
    if "sample" not in run.streams:
        out.append("no sample stream: no memory.stat/meminfo samples to reconcile against")
    for entry in run.metadata.get("not_traced") or []:
        if isinstance(entry, dict) and entry.get("what"):
            out.append(f"not traced: {entry['what']} ({entry.get('why', 'no reason given')})")
    return out
