"""The shim in processes that were started with it (an LD_PRELOAD in a compose file): when
uvmtrace attaches to them, their shim directory already holds every CUDA/NVML/sysinfo call they
made since they started, and keeps receiving them.

A process is found to have the shim through its own environment (UVMTRACE_SHIM_DIR, and
LD_PRELOAD naming the shim library). The directory is opened through /proc/PID/root, so a path
inside a container resolves in the container's own mounts, and held open by descriptor, so its
files stay readable after the container is gone. A directory shared by several runs holds
other runs' files too: only the files of the targets' pid namespaces are read (of the host's:
those of the target processes, or of processes started after the attach).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from uvmtrace.shim import file_layout as layout
from uvmtrace.shim.decode import ShimDecoder
from uvmtrace.shim.pids import own_pid_ns
from uvmtrace.shim.rundir import ENV_DIR

SHIM_NAME = "libuvmshim"  # the shim library's file name starts with it (shim/build.py)


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for entry in raw.split(b"\0"):
        key, eq, value = entry.partition(b"=")
        if eq:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def pid_ns(pid: int) -> int | None:
    try:
        link = os.readlink(f"/proc/{pid}/ns/pid")
        return int(link[link.index("[") + 1 : -1])
    except (OSError, ValueError):
        return None


@dataclass
class ShimDir:
    fd: int  # the directory, held open
    seen_as: str  # UVMTRACE_SHIM_DIR as the processes have it
    pids: set[int]  # target processes that write there (host pids)
    namespaces: set[int]  # their pid namespaces
    oldest_start_ns: int = 0  # CLOCK_MONOTONIC start of the oldest of them


def find(pids: Iterable[int]) -> list[ShimDir]:
    """The shim directories of these processes, one per directory."""
    found: dict[tuple[int, int], ShimDir] = {}
    for pid in pids:
        env = environ(pid)
        where = env.get(ENV_DIR, "")
        if not where.startswith("/") or SHIM_NAME not in env.get("LD_PRELOAD", ""):
            continue
        try:
            fd = os.open(f"/proc/{pid}/root{where}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if key in found:
            os.close(fd)
        else:
            found[key] = ShimDir(fd, where, set(), set())
        d = found[key]
        d.pids.add(pid)
        ns = pid_ns(pid)
        if ns is not None:
            d.namespaces.add(ns)
        started = start_ns(pid)
        if started is not None:
            d.oldest_start_ns = min(d.oldest_start_ns or started, started)
    return list(found.values())


def start_ns(pid: int) -> int | None:
    """When the process started, on CLOCK_MONOTONIC (the shim's clock): field 22 of
    /proc/PID/stat is in clock ticks since boot (equal to monotonic time on a machine that
    never suspended; a second earlier, to be safe)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    ticks = int(text[text.rindex(")") + 2 :].split()[19])
    return max(0, ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK") - 1_000_000_000)


class PreloadedShim:
    """One source over the shim directories of the targets; the interface of ShimDecoder."""

    def __init__(self, dirs: list[ShimDir], since_ns: int) -> None:
        self.dirs = dirs
        self.since_ns = since_ns  # CLOCK_MONOTONIC of the attach: host processes started later
        self.host_ns = own_pid_ns()
        self.decoders = [
            ShimDecoder(Path(f"/proc/self/fd/{d.fd}"), accept=self._accepts(d)) for d in dirs
        ]

    def _accepts(self, d: ShimDir) -> Callable[[str], bool]:
        """Whether a file of the directory is one of the targets': a record file by the pid
        namespace its header names; a note (`.off`, no header) by when it was started (its
        name: "<ns pid>-<CLOCK_MONOTONIC ns>"), not before the targets' oldest process."""
        decided: dict[str, bool] = {}

        def accept(name: str) -> bool:
            if name not in decided:
                verdict = self._belongs(d, name)
                if verdict is None:
                    return False  # header not written yet: asked again at the next poll
                decided[name] = verdict
            return decided[name]

        return accept

    def _belongs(self, d: ShimDir, name: str) -> bool | None:
        pid, _, rest = name.partition("-")
        started = rest.split(".", 1)[0]
        if not (pid.isdigit() and started.isdigit()):
            return False
        if name.endswith(".off"):
            return int(started) >= d.oldest_start_ns
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d.fd)
        except OSError:
            return False
        try:
            raw = os.pread(fd, layout.HEADER_DTYPE.itemsize, 0)
        finally:
            os.close(fd)
        if len(raw) < layout.HEADER_DTYPE.itemsize:
            return None
        header = np.frombuffer(raw, dtype=layout.HEADER_DTYPE)[0]
        if int(header["magic"]) != layout.MAGIC:
            return None if int(header["magic"]) == 0 else False
        ns = int(header["pid_ns"])
        if ns != self.host_ns:
            return ns in d.namespaces
        return int(header["pid"]) in d.pids or int(started) >= self.since_ns

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"dir": d.seen_as, "pids": sorted(d.pids), "pid_namespaces": sorted(d.namespaces)}
            for d in self.dirs
        ]

    def poll(self) -> list[pa.RecordBatch]:
        return [b for dec in self.decoders for b in dec.poll()]

    def close(self) -> list[pa.RecordBatch]:
        out = [b for dec in self.decoders for b in dec.close()]
        for d in self.dirs:
            os.close(d.fd)
        return out

    def stats(self) -> dict[str, Any]:
        total: dict[str, Any] = {}
        for dec in self.decoders:
            for key, value in dec.stats().items():
                if isinstance(value, dict):
                    total.setdefault(key, {}).update(value)
                elif isinstance(value, list):
                    total.setdefault(key, []).extend(value)
                else:
                    total[key] = total.get(key, 0) + value
        return total
