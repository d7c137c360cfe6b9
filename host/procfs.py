"""What /proc says about a process that more than one part of uvmtrace reads."""

from __future__ import annotations

import os
from collections.abc import Iterator


def open_fds(pid: int) -> Iterator[tuple[os.stat_result, str, str]]:
    """(stat of the file, /proc/PID/fd/N, the path it names) for each fd `pid` holds open; fds
    that close meanwhile, or a process that is gone, are skipped. stat() follows the fd to the
    file itself: a FIFO or socket is stat'ed, never opened."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return
    for fd in fds:
        opener = f"{fd_dir}/{fd}"
        try:
            st = os.stat(opener)
            target = os.readlink(opener)
        except OSError:
            continue
        yield st, opener, target
