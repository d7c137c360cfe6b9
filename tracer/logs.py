"""Recognising what a framework says about its own memory in its output (stream "log").

`uvmtrace record` shows the command's output live and passes every line through `LogScanner`,
which keeps the lines where TensorRT-LLM, vLLM, SGLang or llama.cpp state a KV-cache size
(`kv_cache`, `kv_blocks`) or another memory figure (`memory_log`), so a report can set "the
framework says it allocated X GiB" beside the allocation that was traced. The formats, and the
releases that print each, are the table in tracer/log_formats.py.

A line that names the KV cache and states a figure but matches no statement (a format this table
does not know yet) is kept as `log_unparsed`, never dropped in silence: the report counts them.

Cheap by construction: one small search over the raw bytes of each line passes over every line
that states no size, count or KV cache; only the others are decoded, stripped of colour codes
and prefixes, and matched against the statements whose literal needle they hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from uvmtrace.recording.schema import make_batch
from uvmtrace.tracer.log_formats import (
    GIB,
    KV_FIGURE,
    KV_MENTION,
    LLAMA_CPP_FUNCTION,
    MIB,
    PREFIXES,
    STATEMENTS,
    UNITS,
    Statement,
)

__all__ = ["GIB", "MIB", "LogEvent", "LogScanner", "recognize", "strip_prefixes"]

# Colour and cursor codes (CSI sequences), and the "#033[..m" that syslog writes for ESC.
_ANSI = re.compile(r"(?:\x1b|#033)\[[0-9;?]*[ -/]*[@-~]")
# Every statement states a size (a unit), a count of tokens, blocks or cells, or names the KV
# cache: a line with none of these is passed over after one cheap search (~2 us).
_CANDIDATE = re.compile(rb"[KMG]i?B\b|bytes|tokens|blocks?|cells|[kK]/?[vV]")
_PATTERNS = {s.name: re.compile(s.pattern) for s in STATEMENTS}
_MENTION = re.compile(KV_MENTION)
_PREFIX = re.compile("|".join(f"(?P<{p.name}>{p.pattern})" for p in PREFIXES))
_PREFIX_FRAMEWORK = {p.name: p.framework for p in PREFIXES}
assert len(_PATTERNS) == len(STATEMENTS), "statement names must be unique"


@dataclass(frozen=True)
class LogEvent:
    statement: Statement | None  # None: names the KV cache, states a figure, not understood
    framework: str | None
    bytes: int | None
    free_bytes: int | None
    total_bytes: int | None
    tokens: int | None  # stated, or blocks x tokens per block when the log stated both
    blocks: int | None
    block_size: int | None  # tokens per block
    text: str  # the line, colour codes removed

    @property
    def event(self) -> str:
        return self.statement.event if self.statement else "log_unparsed"


def strip_prefixes(line: str) -> tuple[str, str | None]:
    """The framework's message without what loggers, runtimes and collectors put in front of
    it, and the framework whose prefix was seen (None when no prefix names one)."""
    framework = None
    pos = 0
    while m := _PREFIX.match(line, pos):
        framework = framework or _PREFIX_FRAMEWORK[m.lastgroup or ""]
        pos = m.end()
    message = line[pos:]
    if framework is None and LLAMA_CPP_FUNCTION.match(message):
        framework = "llama_cpp"
    return message, framework


def _clean(text: str) -> str:
    text = text.rstrip("\r\n")
    if "\r" in text:  # a progress bar redrawn before the line: keep what the terminal shows
        text = text.rsplit("\r", 1)[1]
    return _ANSI.sub("", text) if ("\x1b" in text or "#033[" in text) else text


def recognize(line: str, block_size: int | None = None) -> LogEvent | None:
    """The memory statement in one output line, if it is one; `block_size` is the tokens per
    block the log stated earlier. A line naming the KV cache with a figure that no statement
    understands comes back as a `log_unparsed` event (statement None)."""
    text = _clean(line)
    message, framework = strip_prefixes(text)
    for statement in STATEMENTS:
        if statement.needle in message:
            m = _PATTERNS[statement.name].search(message)
            if m is not None:
                return _event(statement, m.groupdict(), text, block_size)
    if _MENTION.search(message) and KV_FIGURE.search(message):
        return LogEvent(None, framework, None, None, None, None, None, None, text)
    return None


def _event(
    statement: Statement, groups: dict[str, str | None], text: str, block_size: int | None
) -> LogEvent:
    unit = UNITS[u] if (u := groups.get("unit")) else statement.unit

    def amount(*fields: str) -> int | None:
        values = [float(v) for f in fields if (v := groups.get(f)) is not None]
        return round(sum(values) * unit) if values else None

    def count(field: str) -> int | None:
        v = groups.get(field)
        return int(v.replace(",", "")) if v else None

    blocks = count("blocks")
    block_size = count("block_size") or block_size
    tokens = count("tokens")
    if tokens is None and blocks is not None and block_size and blocks >= 0:
        tokens = blocks * block_size
    return LogEvent(
        statement=statement,
        framework=statement.framework,
        bytes=amount("bytes", "bytes2", "bytes3"),
        free_bytes=amount("free"),
        total_bytes=amount("total"),
        tokens=tokens,
        blocks=blocks,
        block_size=block_size,
        text=text,
    )


def _rows(e: LogEvent) -> list[dict[str, object]]:
    """One row per event; a block count with a known block size also gives the tokens."""
    row = {
        "event": e.event,
        "item": e.framework,
        "caller": e.statement.name if e.statement else None,
        "bytes": e.bytes,
        "free_bytes": e.free_bytes,
        "total_bytes": e.total_bytes,
        "count": e.tokens,
        "text": e.text,
    }
    if e.event != "kv_blocks":
        return [row]
    rows = [{**row, "count": e.blocks}]
    if e.tokens is not None:
        rows.append({**row, "event": "kv_cache", "count": e.tokens})
    return rows


class LogScanner:
    """Turns output lines into `log` events; see docs/recording.md. Lines in, one batch out."""

    def __init__(self) -> None:
        self.lines_seen = 0
        self.events = 0
        self.unparsed = 0
        self.block_size: int | None = None  # tokens per block, once the log has stated it

    def scan(self, lines: list[bytes], ts_ns: int) -> pa.RecordBatch | None:
        self.lines_seen += len(lines)
        rows: list[dict[str, object]] = []
        for raw in lines:
            if _CANDIDATE.search(raw) is None:
                continue
            event = recognize(raw.decode("utf-8", errors="replace"), self.block_size)
            if event is None:
                continue
            if event.block_size:
                self.block_size = event.block_size
            if event.event == "block_size":
                continue  # remembered for the block counts that follow, not recorded
            self.unparsed += event.statement is None
            rows.extend(_rows(event))
        if not rows:
            return None
        self.events += len(rows)
        columns = {k: [r[k] for r in rows] for k in rows[0]}
        return make_batch({"ts_ns": ts_ns, "stream": "log", **columns}, num_rows=len(rows))
