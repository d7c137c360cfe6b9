"""The copy of the command's stdout and stderr (from the output tee), cut into lines for a
callback that looks for what frameworks print about their memory. Reading it never stands
between the command and its output: the tee forwards first, and goes on without us."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable


class OutputPump:
    def __init__(self, copies: list[int], on_lines: Callable[[list[bytes]], None]) -> None:
        self._partial = {fd: b"" for fd in copies}  # read end of a copy -> its unfinished line
        self._on_lines = on_lines

    @property
    def open(self) -> bool:
        return bool(self._partial)

    def pump(self, timeout: float) -> bool:
        """Wait up to `timeout` for output and scan every complete line; False if none came."""
        if not self._partial:
            return False
        try:
            readable, _, _ = select.select(list(self._partial), [], [], timeout)
        except InterruptedError:  # a signal we forward: the caller's loop goes on
            return False
        for fd in readable:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if chunk:
                self._lines(fd, self._partial[fd] + chunk)
            else:
                self._close(fd)
        return bool(readable)

    def finish(self, quiet_s: float = 0.5) -> None:
        """The command is gone: scan what the tee still forwards, until its end or until nothing
        came for `quiet_s` (a background child may hold the output open for hours)."""
        while self._partial:
            deadline = time.monotonic() + quiet_s
            while self._partial and not self.pump(max(0.0, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    for fd in list(self._partial):
                        self._close(fd)
                    return

    def _close(self, fd: int) -> None:
        rest = self._partial.pop(fd)
        if rest:
            self._on_lines([rest])
        os.close(fd)

    def _lines(self, fd: int, data: bytes) -> None:
        *lines, self._partial[fd] = data.split(b"\n")
        if lines:
            self._on_lines(lines)
