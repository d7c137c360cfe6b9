"""The recorder's end of --reclaim-before-sizing: the run directory's `reclaim.sock`.

Before a sizing query (sysinfo, cuMemGetInfo, NVML) answers, the shim connects here, says
"PID_NS NS_PID TID FUNCTION", and waits, for at most the timeout it was given, for one line
back. The recorder reclaims in between; what it answers does not matter to the shim (the real
call then answers from the kernel), only that it answered. Who asked comes from SO_PEERCRED: the
kernel's pid in our namespace, valid for a process inside a container too.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from uvmtrace.recording.cuda_functions import RECORDED
from uvmtrace.shim.announce import listening_socket

RECLAIM = "reclaim.sock"  # = UVMSHIM_RECLAIM in uvmshim.h
ENV_RECLAIM = "UVMTRACE_RECLAIM"  # "<timeout ms>:<query names>", read by the shim
# The queries that size memory. cuMemGetInfo only on a unified-memory GPU, where the driver
# answers from system memory; on a discrete GPU page cache does not change it.
HOST_QUERIES = tuple(f.name for f in RECORDED if f.kind == "query" and f.lib == "libc")
UNIFIED_QUERIES = tuple(f.name for f in RECORDED if f.kind == "query" and f.lib != "libc")
DEFAULT_TIMEOUT_MS = 5000
_UCRED = struct.Struct("3i")  # pid, uid, gid


def reclaim_env(queries: tuple[str, ...], timeout_ms: int = DEFAULT_TIMEOUT_MS) -> dict[str, str]:
    """The environment that turns the shim's reclaim requests on, for these queries."""
    return {ENV_RECLAIM: f"{timeout_ms}:{','.join(queries)}"}


def env_items(env: Mapping[str, str]) -> dict[str, str]:
    """The reclaim variable of `env`, if set (to pass into a container)."""
    return {ENV_RECLAIM: env[ENV_RECLAIM]} if ENV_RECLAIM in env else {}


@dataclass
class Request:
    conn: socket.socket
    host_pid: int
    pid_ns: int | None
    ns_pid: int | None
    tid: int | None
    function: str

    def answer(self, line: str) -> None:
        with contextlib.suppress(OSError):  # the shim gave up waiting: nothing to tell
            self.conn.sendall(line.encode() + b"\n")
        self.conn.close()


class ReclaimRequests:
    """The listening socket; `pending()` returns requests whose shim is waiting for an answer."""

    def __init__(self, run_dir: Path) -> None:
        self.sock = listening_socket(run_dir, RECLAIM, 64)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for a request; True when one is pending."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        return bool(readable)

    def pending(self) -> list[Request]:
        out = []
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return out
            pid, _, _ = _UCRED.unpack(
                conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            )
            conn.settimeout(0.2)
            try:
                fields = conn.recv(128).decode("ascii", "replace").split()
            except OSError:
                fields = []
            nums = [int(f) if f.isdigit() else None for f in fields[:3]]
            nums += [None] * (3 - len(nums))
            out.append(Request(conn, pid, *nums, fields[3] if len(fields) > 3 else "?"))

    def close(self) -> None:
        self.sock.close()
