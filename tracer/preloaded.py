"""The shim in processes that were started with it (an LD_PRELOAD in a compose file): when
uvmtrace attaches to them, their shim directory already holds every CUDA/NVML/sysinfo call they
made since they started, and keeps receiving them.

A process is found to have the shim through its own environment (UVMTRACE_SHIM_DIR, and
LD_PRELOAD naming the shim library). The directory is opened through /proc/PID/root, so a path
inside a container resolves in the container's own mounts, and held open by descriptor, so its
files stay readable after the container is gone. A directory shared by several runs holds
other runs' files too: only the files of the targets' pid namespaces are read (of the host's:
those of the target processes, or created after the attach).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from uvmtrace.shim.decode import ShimDecoder
from uvmtrace.shim.pids import own_pid_ns
from uvmtrace.shim.session import ENV_DIR

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
        found[key].pids.add(pid)
        ns = pid_ns(pid)
        if ns is not None:
            found[key].namespaces.add(ns)
    return list(found.values())


class PreloadedShim:
    """One source over the shim directories of the targets; the interface of ShimDecoder."""

    def __init__(self, dirs: list[ShimDir], since_ns: int) -> None:
        self.dirs = dirs
        self.since_ns = since_ns  # wall clock of the attach: host files created later count
        self.host_ns = own_pid_ns()
        self.decoders = [
            ShimDecoder(Path(f"/proc/self/fd/{d.fd}"), accept=self._accepts(d)) for d in dirs
        ]

    def _accepts(self, d: ShimDir):  # noqa: ANN202 (a closure over d)
        def accept(name: str) -> bool:
            pid, _, rest = name.partition("-")
            ns = rest.split(".", 1)[0]
            if not (pid.isdigit() and ns.isdigit()):
                return False
            if int(ns) != self.host_ns:
                return int(ns) in d.namespaces
            if int(pid) in d.pids:
                return True
            with contextlib.suppress(OSError):
                return os.stat(name, dir_fd=d.fd, follow_symlinks=False).st_ctime_ns >= (
                    self.since_ns
                )
            return False

        return accept

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
