"""Recognising what a framework says about its own memory in its output (stream "log")."""

from __future__ import annotations

import pyarrow as pa


class LogScanner:
    """Turns output lines into `log` events; recognizers are added by the demo issue."""

    def scan(self, lines: list[bytes], ts_ns: int) -> pa.RecordBatch | None:
        return None
