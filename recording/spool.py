"""Crash-safe spool of a recording in progress.

A spool is a private directory holding `events.arrows` (an Arrow IPC stream, flushed after each
batch, its buffers LZ4-compressed) and `meta.json` (rewritten atomically). A killed recorder
leaves both behind; every complete batch in the stream can be read back (`read_spool`) and
turned into a recording by `recover`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from uvmtrace.recording.errors import UserError
from uvmtrace.recording.safefs import create_private_file, give_to, make_private_dir
from uvmtrace.recording.schema import SCHEMA

EVENTS = "events.arrows"
META = "meta.json"
# Uncompressed, a --raw recording spooled ~130 B/row and filled a disk in 10 minutes at 700 k
# rows/s (docs/performance.md); LZ4 is the cheapest codec Arrow IPC has. Readers decompress.
WRITE_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


class Spool:
    def __init__(self, directory: Path, owner: tuple[int, int] | None = None) -> None:
        # Owned by the user who ran sudo from the start: a spool left by a killed recorder is
        # theirs to recover without sudo.
        self.owner = owner
        self.directory = make_private_dir(directory)
        give_to(self.directory, owner)
        fd = create_private_file(directory / EVENTS)
        give_to(directory / EVENTS, owner)
        self._sink = os.fdopen(fd, "wb", buffering=0)
        self._stream = pa.ipc.new_stream(self._sink, SCHEMA, options=WRITE_OPTIONS)
        self.write_meta({})

    def append(self, batch: pa.RecordBatch) -> None:
        self._stream.write_batch(batch)

    def write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self.directory / (META + ".tmp")
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
        fd = create_private_file(tmp)
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f, default=str)
        give_to(tmp, self.owner)
        os.replace(tmp, self.directory / META)

    def close(self) -> None:
        self._stream.close()
        self._sink.close()

    def remove(self) -> None:
        for name in (EVENTS, META):
            (self.directory / name).unlink(missing_ok=True)
        self.directory.rmdir()


def read_spool(directory: Path) -> tuple[dict[str, Any], Iterator[pa.RecordBatch], list[int]]:
    """Metadata, the complete batches, and a one-element list that ends up holding the count of
    bytes at the tail that did not form a complete batch (a writer killed mid-batch)."""
    events = directory / EVENTS
    if not directory.is_dir():
        raise UserError(f"{directory} is not a spool directory")
    if not events.is_file():
        raise UserError(f"{directory} holds no {EVENTS}: not a uvmtrace spool")
    try:
        meta = json.loads((directory / META).read_text())
    except (OSError, ValueError):
        meta = {}
    size = events.stat().st_size
    torn = [0]

    def batches() -> Iterator[pa.RecordBatch]:
        with pa.OSFile(str(events), "rb") as src:
            try:
                reader = pa.ipc.open_stream(src)
            except (pa.ArrowInvalid, OSError):
                torn[0] = size
                return
            good = src.tell()
            while True:
                try:
                    batch = reader.read_next_batch()
                    yield batch
                    good = src.tell()
                except StopIteration:
                    torn[0] = size - src.tell()
                    return
                except (pa.ArrowInvalid, OSError):
                    torn[0] = size - good
                    return

    return meta, batches(), torn
