"""Writes a recording: batches go to a crash-safe spool and, in row groups, to the Parquet file.

The Parquet file is built under a temporary name and renamed into place on `close`, so the output
path only ever holds a complete recording. If the recorder dies, the spool survives and
`uvmtrace recover` rebuilds the file from it. A write that fails (disk full, a directory gone
read-only) never reaches the caller: the writer stops, keeps the spool as it is, counts what it
could not write, and `failure` says what happened.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from uvmtrace.recording.safefs import create_private_file, give_to
from uvmtrace.recording.schema import SCHEMA, conform, encode_metadata
from uvmtrace.recording.spool import Spool

ROW_GROUP_ROWS = 65_536
ROW_GROUP_BYTES = 32 << 20  # or fewer rows: the pending row group is the writer's memory
# Drains give small batches (~26 rows, 40 a second in the default aggregated mode), each with
# its own buffers and dictionaries: ~29 KB of heap per batch, 5x what its rows need, so a row
# group pending 65 s held ~75 MB. Every this many batches, the small ones are merged into one.
MERGE_BATCHES = 64


class RecordingWriter:
    def __init__(
        self,
        path: Path,
        metadata: dict[str, Any] | None = None,
        *,
        spool: bool = True,
        owner: tuple[int, int] | None = None,
        row_group_rows: int = ROW_GROUP_ROWS,
    ) -> None:
        self.path = Path(path)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.owner = owner
        self.rows = 0
        self._row_group_rows = row_group_rows
        self._pending: list[pa.RecordBatch] = []
        self._small = 0  # batches at the end of _pending not merged yet
        self._pending_rows = 0
        self._pending_bytes = 0
        self.failure: str | None = None  # why writing stopped, once it did
        self.rows_not_written = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        fd = create_private_file(self._tmp)
        self._sink = os.fdopen(fd, "wb")
        self._parquet = pq.ParquetWriter(
            self._sink, SCHEMA, compression="zstd", use_dictionary=True, write_statistics=True
        )
        self.spool = Spool(self.spool_path(self.path), owner) if spool else None
        if self.spool:
            self.spool.write_meta(self.metadata)

    @staticmethod
    def spool_path(path: Path) -> Path:
        return Path(path).with_name(f"{Path(path).name}.spool")

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if self.failure is not None:
            self.rows_not_written += batch.num_rows
            return
        try:
            batch = conform(batch)
            if self.spool:
                self.spool.append(batch)
            self._pending.append(batch)
            self._small += 1
            self._pending_rows += batch.num_rows
            self._pending_bytes += batch.nbytes
            self.rows += batch.num_rows
            if self._pending_rows >= self._row_group_rows or (
                self._pending_bytes >= ROW_GROUP_BYTES
            ):
                self._flush()
            elif self._small >= MERGE_BATCHES:
                self._merge_small()
        except OSError as exc:
            self._fail(exc, batch.num_rows)

    def update_metadata(self, **entries: Any) -> None:
        self.metadata.update(entries)
        if self.spool and self.failure is None:
            try:
                self.spool.write_meta(self.metadata)
            except OSError as exc:
                self._fail(exc, 0)

    def _fail(self, exc: OSError, rows: int) -> None:
        """Stop writing; free the space the unfinished Parquet file holds; keep the spool."""
        self.failure = f"cannot write {exc.filename or self.path}: {exc.strerror or exc}"
        self.rows_not_written += rows
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        self._small = 0
        self._drop_partial()

    def _drop_partial(self) -> None:
        with contextlib.suppress(Exception):
            self._parquet.close()
        with contextlib.suppress(OSError):
            self._sink.close()
        self._tmp.unlink(missing_ok=True)

    def _merge_small(self) -> None:
        """The small batches at the end of the pending row group become one (copied into new
        buffers, one dictionary per column); the batches merged before stay as they are."""
        small = self._pending[-self._small :]
        merged = (
            pa.Table.from_batches(small, schema=SCHEMA)
            .unify_dictionaries()
            .combine_chunks()
            .to_batches()
        )
        self._pending[-self._small :] = merged
        self._pending_bytes += sum(b.nbytes for b in merged) - sum(b.nbytes for b in small)
        self._small = 0

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=SCHEMA).unify_dictionaries()
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        self._small = 0
        self._parquet.write_table(table, row_group_size=max(table.num_rows, 1))

    def close(self) -> Path | None:
        """Finish the file (metadata in the footer), move it into place, drop the spool.
        None when writing failed: the spool stays for `uvmtrace recover`."""
        if self.failure is None:
            try:
                self._flush()
                self._parquet.add_key_value_metadata(encode_metadata(self.metadata))
                self._parquet.close()
                self._sink.close()
                os.replace(self._tmp, self.path)
                give_to(self.path, self.owner)
            except OSError as exc:
                self._fail(exc, 0)
        if self.failure is not None:
            if self.spool:
                with contextlib.suppress(OSError):
                    self.spool.close()
            return None
        if self.spool:
            self.spool.close()
            self.spool.remove()
        return self.path

    def discard(self) -> None:
        """Stop and delete everything, spool included (nothing worth keeping was recorded)."""
        self.abort()
        if self.spool:
            with contextlib.suppress(OSError):
                self.spool.remove()

    def abort(self) -> None:
        """Stop without producing the file; the spool stays for `uvmtrace recover`."""
        self._drop_partial()
        if self.spool:
            with contextlib.suppress(OSError):
                self.spool.close()


def write_recording(path: Path, batches: list[pa.RecordBatch], metadata: dict[str, Any]) -> Path:
    """Write a complete recording in one go (tests, recover, demo fixtures)."""
    writer = RecordingWriter(path, metadata, spool=False)
    for batch in batches:
        writer.write(batch)
    return writer.close()
