"""The command's stdout and stderr, passed through line by line (still live for the user) and
handed to a callback that looks for what frameworks print about their memory."""

from __future__ import annotations

import os
import select
from collections.abc import Callable
from typing import BinaryIO


class OutputPump:
    def __init__(
        self,
        sinks: dict[int, BinaryIO],
        on_lines: Callable[[list[bytes]], None],
        before_write: Callable[[], None] = lambda: None,
    ) -> None:
        self._sinks = dict(sinks)  # read end of a pipe -> where its lines go
        self._partial = {fd: b"" for fd in sinks}
        self._on_lines = on_lines
        self._before_write = before_write  # e.g. clear the status line

    @property
    def open(self) -> bool:
        return bool(self._sinks)

    def pump(self, timeout: float) -> None:
        """Wait up to `timeout` for output and pass on every complete line."""
        if not self._sinks:
            return
        try:
            readable, _, _ = select.select(list(self._sinks), [], [], timeout)
        except InterruptedError:  # a signal we forward: the caller's loop goes on
            return
        for fd in readable:
            chunk = os.read(fd, 65536)
            if chunk:
                self._lines(fd, self._partial[fd] + chunk, final=False)
            else:
                self._close(fd)

    def finish(self) -> None:
        """The command is gone: take what is left in the pipes (children may still hold them)."""
        for fd in list(self._sinks):
            os.set_blocking(fd, False)
            chunks = []
            try:
                while chunk := os.read(fd, 65536):
                    chunks.append(chunk)
            except BlockingIOError:
                pass
            self._partial[fd] += b"".join(chunks)
            self._close(fd)

    def _close(self, fd: int) -> None:
        self._lines(fd, self._partial.pop(fd), final=True)
        os.close(fd)
        del self._sinks[fd]

    def _lines(self, fd: int, data: bytes, *, final: bool) -> None:
        *lines, rest = data.split(b"\n")
        if final and rest:
            lines.append(rest)
            rest = b""
        if fd in self._partial:
            self._partial[fd] = rest
        if not lines:
            return
        self._before_write()
        sink = self._sinks[fd]
        try:
            sink.write(b"".join(line + b"\n" for line in lines))
            sink.flush()
        except (BrokenPipeError, ValueError):  # our own reader went away: keep recording
            pass
        self._on_lines(lines)
