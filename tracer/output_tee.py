"""The command's stdout and stderr, passed to where uvmtrace's own go by a small separate process
that outlives the recorder, with a copy for the recorder to scan for framework log lines.

The command never writes into a pipe that dies with uvmtrace: if the recorder is killed, the tee
goes on forwarding until the command's output ends, ignoring its broken copy side. If the real
destination goes away (`uvmtrace record ... | head -1`), the tee stops reading that stream, so
the command sees EPIPE/SIGPIPE as it would have without uvmtrace. The tee also draws the
recorder's live status line on the terminal (one writer: output never lands inside it) and
clears it when the recorder stops, or dies.

This file runs as `python -I -S output_tee.py FDS...`: standard library only, no uvmtrace import.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import select
import signal
import struct
import subprocess
import sys
from pathlib import Path

CLEAR = b"\r\x1b[K"
COPY_PIPE_BYTES = 1 << 20  # the recorder may lag this much before copies are dropped
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# Bytes of the stdout and stderr copies the tee dropped: two u64 in a memfd both map.
DROPS = struct.Struct("=QQ")


class OutputTee:
    """Recorder side: pipes for the command's stdout/stderr, the tee process, the copies."""

    def __init__(self, sinks: tuple[int, int] = (1, 2)) -> None:
        out_r, self.stdout_w = os.pipe()
        err_r, self.stderr_w = os.pipe()
        self.copies: list[int] = []
        copy_w = []
        for _ in range(2):
            r, w = os.pipe2(os.O_CLOEXEC)
            # Else the default size: copies are dropped sooner when the recorder lags.
            with contextlib.suppress(OSError):
                fcntl.fcntl(w, F_SETPIPE_SZ, COPY_PIPE_BYTES)
            self.copies.append(r)
            copy_w.append(w)
        status_r, self.status_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.status_w, False)
        drops = os.memfd_create("uvmtrace-tee-drops", os.MFD_CLOEXEC)
        os.ftruncate(drops, DROPS.size)
        self._drops = mmap.mmap(drops, DROPS.size)
        fds = [out_r, err_r, *copy_w, status_r, drops]
        # Its own session: terminal signals (Ctrl-C) are not for it; it ends when output does.
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(Path(__file__)), *map(str, [*fds, *sinks])],
            stdin=subprocess.DEVNULL,
            pass_fds=[*fds, *sinks],
            start_new_session=True,
        )
        for fd in fds:
            os.close(fd)

    def command_started(self) -> None:
        """The command holds the write ends now: ours would keep its output open forever."""
        for fd in (self.stdout_w, self.stderr_w):
            os.close(fd)

    def status(self, text: str) -> None:
        """Show `text` as the status line ('' clears it); dropped if the tee is busy."""
        if self.status_w < 0:
            return
        try:
            os.write(self.status_w, text.replace("\n", " ").encode() + b"\n")
        except BlockingIOError:
            pass
        except OSError:
            self._close_status()

    def dropped(self) -> tuple[int, int]:
        """Bytes of the (stdout, stderr) copies dropped so far because the recorder lagged:
        the command's output itself is whole, but log lines in them were not scanned."""
        return DROPS.unpack_from(self._drops)

    def _close_status(self) -> None:
        if self.status_w >= 0:
            os.close(self.status_w)
            self.status_w = -1

    def close(self) -> None:
        """Stop the status line (the tee keeps forwarding output; the copies' reader closes
        them)."""
        self._close_status()


# ------------------------------------------------------------------------------ the process
def _write_all(fd: int, data: bytes) -> bool:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except InterruptedError:
            continue
        except OSError:
            return False
    return True


def _copy(fd: int, data: bytes, drops: mmap.mmap, which: int) -> bool:
    """Non-blocking: a lagging recorder loses (the rest of) a copy, never stalls the command;
    what it loses is counted in `drops`. False once the recorder is gone."""
    try:
        written = os.write(fd, data)
    except (BlockingIOError, InterruptedError):
        written = 0
    except OSError:
        return False
    if written < len(data):
        counts = list(DROPS.unpack_from(drops))
        counts[which] += len(data) - written
        DROPS.pack_into(drops, 0, *counts)
    return True


def main(argv: list[str]) -> None:
    out_r, err_r, copy_out, copy_err, status_r, drops_fd, sink_out, sink_err = map(int, argv)
    drops = mmap.mmap(drops_fd, DROPS.size)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    for fd in (copy_out, copy_err):
        os.set_blocking(fd, False)
    streams = {out_r: [sink_out, copy_out], err_r: [sink_err, copy_err]}
    shown = False  # a status line is on the terminal

    def clear() -> None:
        nonlocal shown
        if shown:
            _write_all(sink_err, CLEAR)
            shown = False

    status_buf = b""
    while streams:
        watched = [*streams, status_r] if status_r >= 0 else list(streams)
        try:
            readable, _, _ = select.select(watched, [], [])
        except InterruptedError:
            continue
        for fd in readable:
            if fd == status_r:
                data = os.read(fd, 65536)
                if not data:  # the recorder stopped (or died): no status line any more
                    clear()
                    os.close(status_r)
                    status_r = -1
                    continue
                *lines, status_buf = (status_buf + data).split(b"\n")
                if lines:
                    clear()
                    if lines[-1]:
                        shown = _write_all(sink_err, CLEAR + lines[-1])
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            sink, copy = streams[fd]
            if chunk:
                clear()
                if _write_all(sink, chunk):
                    if copy >= 0 and not _copy(copy, chunk, drops, int(fd == err_r)):
                        os.close(copy)
                        streams[fd][1] = -1
                    continue
            # End of the command's output, or its reader went away: the command now sees
            # what it would have seen writing there itself (EPIPE / SIGPIPE).
            os.close(fd)
            if copy >= 0:
                os.close(copy)
            del streams[fd]
    clear()


if __name__ == "__main__":
    main(sys.argv[1:])
