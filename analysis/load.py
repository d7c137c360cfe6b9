"""Loads the parts of one recording that analysis needs, each as an eager frame.

A 10-million-event recording is mostly `memcg_charge` and `page_fault` rows (raw mode writes one
row per update and per fault). The file is read by three queries collected together: the charges
(six columns, dictionary columns kept categorical: casting millions of `item`/`comm` values to
strings costs more than reading them), the fault rows folded per pid as they are read, and every
other row (a few per cent of the file), which is split here into small frames by stream. The time
span and the streams present come from those three results, so no query reads the file again.
A recording without some stream still loads: its frames are empty and `missing` says what the
report cannot tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from uvmtrace.analysis.items import VERSION_SUFFIX
from uvmtrace.recording.errors import RecordingError
from uvmtrace.recording.metadata import Metadata
from uvmtrace.recording.reader import Recording, open_recording

_STR = pl.String
# the high-rate kernel events: never loaded row by row except the charges
_BULK = ["memcg_charge", "page_fault", "memcg_event"]


@dataclass
class RunData:
    recording: Recording
    t0_ns: int
    t_end_ns: int
    streams: set[str]
    charges: (
        pl.DataFrame
    )  # memcg_charge, by ts: ts_ns, cgroup_id, item (cat), bytes, pid, comm (cat)
    files: pl.DataFrame  # filemap_add/delete: ts_ns, event, cgroup_id, path, bytes, pid
    mappings: pl.DataFrame  # mmap/munmap/...: ts_ns, event, pid, bytes, path, flags, result, item
    calls: pl.DataFrame  # cuda stream + kernel sysinfo/openat: queries, allocations, dur_ns
    samples: pl.DataFrame  # sample stream
    proc: pl.DataFrame  # proc stream
    logs: pl.DataFrame  # log stream
    fault_counts: pl.DataFrame  # page_fault summed per pid: pid, faults
    # snapshot stream (attached recordings): ts_ns, event, pid, comm, item, bytes, total_bytes, ...
    snapshot: pl.DataFrame = field(default_factory=pl.DataFrame)
    missing: list[str] = field(default_factory=list)
    # frames derived from the charges, built once and shared by attribution, sizing and diff
    derived: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def metadata(self) -> dict[str, Any]:
        """As written (JSON), for output; read fields through `meta`."""
        return self.recording.metadata

    @property
    def meta(self) -> Metadata:
        return self.recording.meta

    @property
    def path(self) -> Path:
        return self.recording.path

    def rel_s(self, ts_ns: int | None) -> float | None:
        return None if ts_ns is None else (ts_ns - self.t0_ns) / 1e9

    def cgroup_name(self, cgroup_id: int | None) -> str:
        """A container's name (or short id), else the cgroup path, else the id."""
        if cgroup_id is None:
            return "no cgroup"
        info = self.meta.cgroup(cgroup_id)
        if info.container_name:
            return f"container {info.container_name}"
        if info.container_id:
            return f"container {info.container_id[:12]}"
        container = self.meta.container
        if container is not None and container.cgroup_id == int(cgroup_id) and container.label:
            return f"container {container.label}"
        return info.path or f"cgroup {cgroup_id}"

    def cgroup_path(self, cgroup_id: int | None) -> str | None:
        info = self.meta.cgroup(cgroup_id)
        if info.path:
            return info.path
        container = self.meta.container
        if (
            container is not None
            and cgroup_id is not None
            and container.cgroup_id == int(cgroup_id)
        ):
            return container.cgroup_path
        return None


def _queries(lf: pl.LazyFrame) -> list[pl.LazyFrame]:
    event = pl.col("event")
    charges = lf.filter(event == "memcg_charge").select(
        "ts_ns", "cgroup_id", "item", "bytes", "pid", "comm"
    )
    bulk = (
        lf.filter(event.is_in(["page_fault", "memcg_event"]))
        .group_by("pid", event.cast(_STR))
        .agg(
            pl.col("count").fill_null(1).sum().alias("faults"),
            pl.col("ts_ns").min().alias("t0"),
            pl.col("ts_ns").max().alias("t1"),
        )
    )
    rest = lf.filter(~event.is_in(_BULK)).select(
        "ts_ns",
        *[pl.col(c).cast(_STR) for c in ("stream", "event", "item", "path", "caller", "comm")],
        "pid",
        "tid",
        "cgroup_id",
        "bytes",
        "addr",
        "free_bytes",
        "total_bytes",
        "result",
        "flags",
        "count",
        "text",
        "dur_ns",
    )
    return [charges, bulk, rest]


def load_run(path: str | Path) -> RunData:
    rec = open_recording(path)
    try:
        charges, bulk, rest = pl.collect_all(_queries(rec.scan()))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise RecordingError(f"{rec.path}: unreadable recording ({exc})") from None

    # the recorder writes in time order, so this is a check, not a sort, for real recordings
    if not charges["ts_ns"].is_sorted():
        charges = charges.sort("ts_ns", maintain_order=True)
    charges = charges.with_columns(pl.col("ts_ns").set_sorted())

    stream = pl.col("stream")
    ev = pl.col("event")
    # reclaim_file: pages `record --reclaim-before-sizing` dropped (tracer/reclaim.py)
    files = rest.filter(
        ((stream == "kernel") & ev.is_in(["filemap_add", "filemap_delete"]))
        | ((stream == "proc") & (ev == "reclaim_file"))
    )
    mappings = rest.filter((stream == "kernel") & ev.is_in(["mmap", "munmap", "mremap", "brk"]))
    calls = rest.filter(
        (stream == "cuda") | ((stream == "kernel") & ev.is_in(["sysinfo", "openat"]))
    )
    # `cuMemAlloc_v2` and `cuMemAlloc` are one call for analysis.
    calls = calls.select(
        "ts_ns",
        "stream",
        "event",
        "pid",
        "bytes",
        "addr",
        "free_bytes",
        "total_bytes",
        "result",
        "path",
        "caller",
        "dur_ns",
        "item",
        "comm",
        ev.str.replace(VERSION_SUFFIX, "").alias("call"),
    )
    run = RunData(
        recording=rec,
        t0_ns=0,
        t_end_ns=0,
        streams=set(),
        charges=charges,
        files=files.select("ts_ns", "event", "cgroup_id", "path", "bytes", "pid"),
        mappings=mappings.select(
            "ts_ns", "event", "pid", "bytes", "path", "flags", "result", "item"
        ),
        calls=calls,
        samples=rest.filter(stream == "sample").select(
            "ts_ns", "event", "cgroup_id", "item", "bytes", "free_bytes", "total_bytes"
        ),
        proc=rest.filter(stream == "proc").select(
            "ts_ns", "event", "pid", "tid", "item", "count", "result", "text", "comm", "bytes"
        ),
        logs=rest.filter(stream == "log").select("ts_ns", "event", "item", "bytes", "text"),
        fault_counts=bulk.filter(pl.col("event") == "page_fault").select("pid", "faults"),
        snapshot=rest.filter(stream == "snapshot").select(
            "ts_ns", "event", "pid", "comm", "item", "bytes", "total_bytes", "path", "count", "text"
        ),
    )
    _span(run, rest, bulk)
    run.missing = _missing(run)
    return run


def _span(run: RunData, rest: pl.DataFrame, bulk: pl.DataFrame) -> None:
    """First and last timestamp and the streams present, from what the queries returned."""
    firsts = [run.charges["ts_ns"].min(), rest["ts_ns"].min(), bulk["t0"].min()]
    lasts = [run.charges["ts_ns"].max(), rest["ts_ns"].max(), bulk["t1"].max()]
    run.t0_ns = min((int(t) for t in firsts if t is not None), default=0)  # type: ignore[call-overload]
    run.t_end_ns = max((int(t) for t in lasts if t is not None), default=run.t0_ns)  # type: ignore[call-overload]
    run.streams = set(rest["stream"].drop_nulls().unique().to_list())
    if run.charges.height or bulk.height:
        run.streams.add("kernel")


def is_kernel_side(what: str) -> bool:
    """A metadata `not_traced` entry about the kernel side (eBPF probes, kernel events)."""
    what = what.lower()
    return any(w in what for w in ("kernel", "ebpf", "bpf", "memcg", "probe"))


def recovery(meta: Metadata) -> dict[str, Any] | None:
    """How a recording rebuilt by `uvmtrace recover` is incomplete (None: written normally).
    Cut: the recorder stopped before the command ended (killed, disk full), or a batch was
    cut off mid-write."""
    if not meta.recovered:
        return None
    torn = meta.recovered_torn_bytes
    why = []
    if not meta.ended:
        why.append("the recording stopped before the command ended")
    if torn:
        why.append(f"{torn:,} bytes of a batch cut off mid-write were dropped")
    return {"recovered": True, "cut": bool(why), "why": "; ".join(why), "torn_bytes": torn}


def _missing(run: RunData) -> list[str]:
    """What this recording cannot tell, in words a reader acts on."""
    out: list[str] = []
    if not run.recording.num_rows:
        out.append("the recording holds no events")
    attach = run.meta.attach
    if attach is not None and attach.missing_before:
        out.append(f"attached to running processes: {attach.missing_before}")
    not_traced = list(run.meta.not_traced)
    if "kernel" not in run.streams:
        # the recorder's own reason, when it wrote one, instead of a guess
        why = next((e for e in not_traced if is_kernel_side(e.what)), None)
        if why is not None:
            not_traced.remove(why)
        attached = any(p.attached for p in run.meta.probes.values())
        out.append(
            "no kernel stream: memory charges, page faults and page cache were not traced "
            + (
                f"({why.what}: {why.why or 'no reason given'})"
                if why
                else "(the probes were attached: the traced processes did nothing they see)"
                if attached
                else "(was `record` run as root with eBPF?)"
            )
        )
    elif run.charges.is_empty():
        out.append("no memcg_charge events: charges by cgroup and kind are unknown")
    if "cuda" not in run.streams:
        out.append("no cuda stream: CUDA queries and allocations were not traced")
    if "sample" not in run.streams:
        out.append("no sample stream: no memory.stat/meminfo samples to reconcile against")
    for entry in not_traced:
        out.append(f"not traced: {entry.what} ({entry.why or 'no reason given'})")
    return out
