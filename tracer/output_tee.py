"""The command's stdout and stderr, passed to where uvmtrace's own go by a small separate process
that outlives the recorder, with a copy for the recorder to scan for framework log lines.

The command never writes into a pipe that dies with uvmtrace: if the recorder is killed, the tee
goes on forwarding until the command's output ends, ignoring its broken copy side. If the real
destination goes away (`uvmtrace record ... | head -1`), the tee stops reading that stream, so
the command sees EPIPE/SIGPIPE as it would have without uvmtrace. The tee also draws the
recorder's live status line on the terminal (one writer: output never lands inside it) and
clears it when the recorder stops, or dies.

Where uvmtrace's stdout or stderr is a terminal, the command's is one too: the slave side of a
pseudo-terminal in raw mode, of the real terminal's size, owner and mode, whose master the tee
reads; so `isatty()`, line buffering, colours, progress bars and `ls` columns are what they would
be without uvmtrace, and the bytes reach the real terminal unchanged (its own line discipline
turns "\\n" into "\\r\\n" once, as always). stdin, the controlling terminal and the process
groups stay as they are: the pty is nobody's controlling terminal, Ctrl-C goes where it went.

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
import termios
import time
import tty
from pathlib import Path

CLEAR = b"\r\x1b[K"
COPY_PIPE_BYTES = 1 << 20  # the recorder may lag this much before copies are dropped
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# Bytes of the stdout and stderr copies the tee dropped: two u64 in a memfd both map.
DROPS = struct.Struct("=QQ")
# How often the tee copies the real terminal's size to a pty on its own (see `resize`).
RESIZE_POLL_S = 0.25


def copy_size(terminal: int, pty: int) -> None:
    """Give the pty the real terminal's window size (a no-op for the kernel when unchanged)."""
    with contextlib.suppress(OSError):
        fcntl.ioctl(pty, termios.TIOCSWINSZ, fcntl.ioctl(terminal, termios.TIOCGWINSZ, bytes(8)))


def _same_terminal(a: int, b: int) -> bool:
    return os.isatty(a) and os.isatty(b) and os.fstat(a).st_rdev == os.fstat(b).st_rdev


def _pty_like(terminal: int) -> tuple[int, int] | None:
    """A pseudo-terminal (master, slave) standing in for `terminal` as the command's output;
    None where none can be had (no devpts, e.g. in some containers): a pipe then, as before."""
    try:
        master, slave = os.openpty()  # opened O_NOCTTY: it never becomes a controlling terminal
    except OSError:
        return None
    try:
        tty.setraw(slave)  # no ONLCR, no echo: the real terminal's own settings apply, once
    except termios.error:
        os.close(master)
        os.close(slave)
        return None
    copy_size(terminal, master)
    # Whoever the real terminal belongs to may reopen /dev/stdout, as without uvmtrace.
    st = os.fstat(terminal)
    with contextlib.suppress(OSError):
        os.fchown(slave, st.st_uid, st.st_gid)
        os.fchmod(slave, st.st_mode & 0o7777)
    return master, slave


class OutputTee:
    """Recorder side: pipes (or ptys) for the command's stdout/stderr, the tee process, the
    copies."""

    def __init__(self, sinks: tuple[int, int] = (1, 2)) -> None:
        self.ptys: list[tuple[int, int]] = []  # (master, the real terminal it stands in for)
        # What each copy holds, in order: its name, the read end it comes from, where it goes.
        streams: list[tuple[str, int, int]] = []
        # stdout and stderr on one terminal: one pty for both, so the terminal shows their
        # bytes in exactly the order written (two ptys read by one select() can swap writes
        # made microseconds apart) and fds 1 and 2 share one open file, as on a terminal.
        # The cost: one merged copy for the log scanner, which then reads the lines the user
        # sees (it already keeps only what follows a progress bar's last \r).
        one = _pty_like(sinks[0]) if _same_terminal(*sinks) else None
        if one is not None:
            master, slave = one
            self.ptys.append((master, sinks[0]))
            self.stdout_w = self.stderr_w = slave
            streams.append(("stdout and stderr", master, sinks[0]))
        else:
            ends = []
            for name, sink in zip(("stdout", "stderr"), sinks, strict=True):
                pty = _pty_like(sink) if os.isatty(sink) else None
                if pty is not None:
                    self.ptys.append((pty[0], sink))
                read_end, write_end = pty or os.pipe()
                streams.append((name, read_end, sink))
                ends.append(write_end)
            self.stdout_w, self.stderr_w = ends
        self.names = [name for name, _, _ in streams]
        self.copies: list[int] = []
        copy_w = []
        for _ in streams:
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
        # argv: status pipe, drop counters, status line's terminal, then per stream: from, to,
        # copy.
        args = [status_r, drops, sinks[1]]
        for (_, read_end, sink), copy in zip(streams, copy_w, strict=True):
            args += [read_end, sink, copy]
        own = [status_r, drops, *copy_w, *(read_end for _, read_end, _ in streams)]
        # Its own session: terminal signals (Ctrl-C) are not for it; it ends when output does.
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(Path(__file__)), *map(str, args)],
            stdin=subprocess.DEVNULL,
            pass_fds=sorted(set(args)),
            start_new_session=True,
        )
        kept = {master for master, _ in self.ptys}  # for `resize`
        for fd in own:
            if fd not in kept:
                os.close(fd)

    def command_started(self) -> None:
        """The command holds the write ends now: ours would keep its output open forever."""
        for fd in {self.stdout_w, self.stderr_w}:
            os.close(fd)

    def resize(self) -> None:
        """The real terminal was resized (SIGWINCH): give the command's ptys its new size.

        A pty that is nobody's controlling terminal signals no one when resized, and the tee,
        in its own session, gets no SIGWINCH; so the recorder, which does, copies the size and
        then forwards the signal, in that order. The tee also copies it every RESIZE_POLL_S on
        its own (cheap: two ioctls), which keeps the size right once the recorder is gone."""
        for master, terminal in self.ptys:
            copy_size(terminal, master)

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

    def dropped(self) -> dict[str, int]:
        """Bytes of each copy ("stdout", "stderr", or "stdout and stderr" on one terminal)
        dropped so far because the recorder lagged: the command's output itself is whole, but
        log lines in them were not scanned."""
        return dict(zip(self.names, DROPS.unpack_from(self._drops), strict=False))

    def _close_status(self) -> None:
        if self.status_w >= 0:
            os.close(self.status_w)
            self.status_w = -1

    def close(self) -> None:
        """Stop the status line (the tee keeps forwarding output; the copies' reader closes
        them)."""
        self._close_status()
        ptys, self.ptys = self.ptys, []  # a resize now finds none
        for master, _ in ptys:
            os.close(master)


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
    status_r, drops_fd, status_sink, *triples = map(int, argv)
    drops = mmap.mmap(drops_fd, DROPS.size)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    # The command's output (a pipe, or a pty master) -> [its destination, the copy, drop slot].
    streams: dict[int, list[int]] = {}
    for which, i in enumerate(range(0, len(triples), 3)):
        source, sink, copy = triples[i : i + 3]
        os.set_blocking(copy, False)
        streams[source] = [sink, copy, which]
    ptys = [(source, sink) for source, (sink, _, _) in streams.items() if os.isatty(source)]
    next_resize = time.monotonic() + RESIZE_POLL_S
    shown = False  # a status line is on the terminal

    def clear() -> None:
        nonlocal shown
        if shown:
            _write_all(status_sink, CLEAR)
            shown = False

    status_buf = b""
    while streams:
        watched = [*streams, status_r] if status_r >= 0 else list(streams)
        timeout = max(0.0, next_resize - time.monotonic()) if ptys else None
        try:
            readable, _, _ = select.select(watched, [], [], timeout)
        except InterruptedError:
            continue
        if ptys and time.monotonic() >= next_resize:
            for source, sink in ptys:
                if source in streams:
                    copy_size(sink, source)
            next_resize = time.monotonic() + RESIZE_POLL_S
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
                        shown = _write_all(status_sink, CLEAR + lines[-1])
                continue
            try:
                # A pty master answers EIO once the last slave is closed: the output's end.
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            sink, copy, which = streams[fd]
            if chunk:
                clear()
                if _write_all(sink, chunk):
                    if copy >= 0 and not _copy(copy, chunk, drops, which):
                        os.close(copy)
                        streams[fd][1] = -1
                    continue
            # End of the command's output, or its reader went away: the command now sees
            # what it would have seen writing there itself (EPIPE / SIGPIPE; EIO on a pty, as
            # on a terminal that hung up).
            os.close(fd)
            if copy >= 0:
                os.close(copy)
            del streams[fd]
    clear()


if __name__ == "__main__":
    main(sys.argv[1:])
