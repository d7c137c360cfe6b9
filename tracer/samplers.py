"""Periodic samples of the kernel's own accounting: the view the traced events must explain.

Each `sample()` returns one batch (stream "sample"): /proc/meminfo, the free pages on per-CPU
lists (/proc/zoneinfo, which MemFree leaves out), every target cgroup's
memory.stat / usage / limit, NVML device and per-process memory where a GPU answers, and the
kernel's fault counters of the traced processes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from uvmtrace.host.cgroupfs import MemoryHierarchy, read_int, read_stat
from uvmtrace.recording.schema import make_batch
from uvmtrace.tracer.headroom import per_cpu_free, read_meminfo


def monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def read_proc_faults(pid: int) -> tuple[int, int] | None:
    """(minflt, majflt) from /proc/PID/stat; also works on a zombie not yet reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ", field 3 (state) is index 0; minflt is field 10, majflt field 12.
    return int(fields[7]), int(fields[9])


class Nvml:
    """NVML, if a GPU and pynvml are there; remembers what it could not read and why."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.notes: list[str] = []
        self.memory_supported = True
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nv = pynvml
            self.handles = [
                pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
            ]
        except Exception as exc:  # no driver, no library, no device: all mean "no NVML"
            self.notes.append(f"NVML unavailable: {exc}")

    def sample(self, ts: int) -> dict[str, list]:
        rows: dict[str, list] = {k: [] for k in ("event", "item", "free", "total", "bytes", "pid")}
        if not self.handles or not self.memory_supported:
            return rows
        for i, h in enumerate(self.handles):
            try:
                mem = self.nv.nvmlDeviceGetMemoryInfo(h)
            except self.nv.NVMLError as exc:
                self.memory_supported = False
                self.notes.append(f"nvmlDeviceGetMemoryInfo: {exc} (integrated GPUs answer this)")
                return rows
            _append(rows, "nvml_memory", str(i), mem.free, mem.total, mem.used, None)
            try:
                procs = self.nv.nvmlDeviceGetComputeRunningProcesses(h)
            except self.nv.NVMLError:
                procs = []
            for p in procs:
                _append(rows, "nvml_process", str(i), None, None, p.usedGpuMemory, p.pid)
        return rows


def _append(rows: dict[str, list], event, item, free, total, used, pid) -> None:
    for key, value in zip(
        ("event", "item", "free", "total", "bytes", "pid"),
        (event, item, free, total, used, pid),
        strict=True,
    ):
        rows[key].append(value)


class Sampler:
    def __init__(self, hierarchy: MemoryHierarchy | None, nvml: Nvml | None = None) -> None:
        self.hierarchy = hierarchy
        self.cgroups: dict[int, Path] = {}  # cgroup id -> directory
        self.pids: set[int] = set()
        self.faults: dict[int, tuple[int, int]] = {}  # last /proc/PID/stat values seen
        self.nvml = nvml

    def add_cgroup(self, cgid: int, path: Path) -> None:
        self.cgroups[cgid] = path

    def sample(self) -> pa.RecordBatch:
        ts = monotonic_ns()
        ev: list[str] = []
        item: list[str] = []
        value: list[int | None] = []
        cg: list[int | None] = []
        for key, v in read_meminfo().items():
            ev.append("meminfo"), item.append(key), value.append(v), cg.append(None)
        pcp = per_cpu_free()  # free pages MemFree leaves out (docs/fix.md)
        if pcp is not None:
            ev.append("zoneinfo"), item.append("per_cpu_free"), value.append(pcp), cg.append(None)
        if self.hierarchy is not None:
            for cgid, path in list(self.cgroups.items()):
                stat = read_stat(path / "memory.stat")
                if not stat:
                    continue  # the cgroup went away (container exited)
                for key, v in stat.items():
                    ev.append("memory.stat"), item.append(key), value.append(v), cg.append(cgid)
                for event, fname in (
                    ("memory.current", self.hierarchy.usage_file),
                    ("memory.limit", self.hierarchy.limit_file),
                ):
                    ev.append(event), item.append(fname), cg.append(cgid)
                    value.append(read_int(path / fname))
        for pid in list(self.pids):
            f = read_proc_faults(pid)
            if f is not None:
                self.faults[pid] = f
        columns: dict[str, Any] = {
            "ts_ns": [ts] * len(ev),
            "stream": "sample",
            "event": ev,
            "item": item,
            "bytes": value,
            "cgroup_id": cg,
        }
        batch = make_batch(columns)
        if self.nvml is not None:
            rows = self.nvml.sample(ts)
            if rows["event"]:
                nv = make_batch(
                    {
                        "ts_ns": [ts] * len(rows["event"]),
                        "stream": "sample",
                        "event": rows["event"],
                        "item": rows["item"],
                        "free_bytes": rows["free"],
                        "total_bytes": rows["total"],
                        "bytes": rows["bytes"],
                        "pid": rows["pid"],
                    }
                )
                return pa.Table.from_batches([batch, nv]).combine_chunks().to_batches()[0]
        return batch

    def fault_batch(self, at_exit: set[int]) -> pa.RecordBatch:
        """The last fault counters seen per process, as `proc_faults` rows. `text` says whether
        the reading is final ("at exit": read while the process was a zombie, which only its
        parent can arrange) or a lower bound ("while running": faults after it are missing)."""
        ts = monotonic_ns()
        pids, items, counts, when = [], [], [], []
        for pid, (minflt, majflt) in sorted(self.faults.items()):
            pids += [pid, pid]
            items += ["minflt", "majflt"]
            counts += [minflt, majflt]
            when += ["at exit" if pid in at_exit else "while running"] * 2
        return make_batch(
            {
                "ts_ns": [ts] * len(pids),
                "stream": "proc",
                "event": "proc_faults",
                "pid": pids,
                "item": items,
                "count": counts,
                "text": when,
            },
            num_rows=len(pids),
        )
