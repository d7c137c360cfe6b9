"""Map a pid inside a pid namespace to the host pid (NSpid line of /proc/PID/status)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")


def own_pid_ns() -> int:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
        return int(link[link.index("[") + 1 : -1])
    except (OSError, ValueError):
        return 0


def proc_host_pid(pid_ns: int, ns_pid: int) -> int | None:
    """Default mapping: identity in our own pid namespace, else a search of live tasks in /proc
    whose pid namespace is `pid_ns` and whose innermost NSpid is `ns_pid` (None if gone)."""
    if pid_ns in (0, own_pid_ns()):
        return ns_pid
    for status in PROC.glob("[0-9]*/task/[0-9]*/status"):
        try:
            nspid = next(
                line.split()[1:]
                for line in status.read_text().splitlines()
                if line.startswith("NSpid:")
            )
            if int(nspid[-1]) != ns_pid:
                continue
            link = os.readlink(status.parent / "ns" / "pid")
            if int(link[link.index("[") + 1 : -1]) == pid_ns:
                return int(nspid[0])
        except (OSError, ValueError, StopIteration, IndexError):
            continue
    return None


class HostPid:
    """Caches a host-pid mapping: asked once per (namespace, pid) it could answer."""

    def __init__(self, mapping: Callable[[int, int], int | None]) -> None:
        self._mapping = mapping
        self._cache: dict[tuple[int, int], int | None] = {}

    def __call__(self, pid_ns: int, ns_pid: int) -> int | None:
        key = (pid_ns, ns_pid)
        if self._cache.get(key) is None:  # a miss may be answered later (an announcement)
            self._cache[key] = self._mapping(pid_ns, ns_pid)
        return self._cache[key]
