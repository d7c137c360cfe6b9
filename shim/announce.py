"""Host pids for shim files written inside containers.

Each shim instance, when it opens its file, connects once to a socket in the run directory and
says "PID_NS NS_PID". The kernel gives us its pid as seen from our pid namespace (SO_PEERCRED), so
the mapping holds even for processes that are gone by the time their records are decoded —
something the NSpid lines in /proc cannot give.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from pathlib import Path

from uvmtrace.shim.pids import proc_host_pid

ANNOUNCE = "announce.sock"  # = UVMSHIM_ANNOUNCE in uvmshim.h
_UCRED = struct.Struct("3i")  # pid, uid, gid


def listening_socket(run_dir: Path, name: str, backlog: int) -> socket.socket:
    """A non-blocking unix stream socket listening at `run_dir`/`name`, for the shims."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        # Through the directory fd: a unix socket path may hold at most 107 bytes.
        sock.bind(f"/proc/self/fd/{dir_fd}/{name}")
    finally:
        os.close(dir_fd)
    # Writable for every uid that may write shim files (a container's user, sudo's user);
    # the run dir itself decides who can reach it.
    os.chmod(run_dir / name, 0o777)
    sock.listen(backlog)
    return sock


class PidAnnouncements:
    """The listening socket plus the (pid_ns, ns_pid) -> host pid mapping it has learnt."""

    def __init__(self, run_dir: Path) -> None:
        self.mapping: dict[tuple[int, int], int] = {}
        self.sock = listening_socket(run_dir, ANNOUNCE, 512)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept_all(self) -> int:
        """Take every pending announcement; returns how many were new."""
        new = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return new
            with conn:
                pid, _, _ = _UCRED.unpack(
                    conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
                )
                conn.settimeout(0.2)
                with contextlib.suppress(OSError):
                    fields = conn.recv(64).split()
                    if len(fields) == 2 and pid > 0:
                        self.mapping[(int(fields[0]), int(fields[1]))] = pid
                        new += 1

    def host_pid(self, pid_ns: int, ns_pid: int) -> int | None:
        self.accept_all()
        found = self.mapping.get((pid_ns, ns_pid))
        return found if found is not None else proc_host_pid(pid_ns, ns_pid)

    def close(self) -> None:
        self.sock.close()
