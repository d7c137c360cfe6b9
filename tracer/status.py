"""The one-line live status of a recording (stderr, only on a terminal, silent with -q)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


class StatusLine:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._shown = False
        self.drops = 0
        # While the command runs the output tee draws the line (one writer on the terminal).
        self.draw: Callable[[str], None] | None = None

    def note(self, text: str) -> None:
        if self.enabled:
            self.clear()
            print(f"uvmtrace: {text}", file=sys.stderr, flush=True)

    def update(self, elapsed: float, events: int, charged: int | None) -> None:
        if not self.tty:
            return
        line = (
            f"uvmtrace: {elapsed:6.1f} s  {events:>10,} events  "
            f"target cgroup {_human(charged)}  drops {self.drops}"
        )
        self._show(line)
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self._show("")
            self._shown = False

    def _show(self, line: str) -> None:
        if self.draw is not None:
            self.draw(line)
        else:
            sys.stderr.write("\r\x1b[K" + line)
            sys.stderr.flush()
