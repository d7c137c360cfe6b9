"""Writes a recording: batches go to a crash-safe spool and, in row groups, to the Parquet file.

The Parquet file is built under a temporary name and renamed into place on `close`, so the output
path only ever holds a complete recording. If the recorder dies, the spool survives and
`uvmtrace recover` rebuilds the file from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from uvmtrace.recording.schema import SCHEMA, conform, encode_metadata
from uvmtrace.tracer.safefs import create_private_file, give_to
from uvmtrace.tracer.spool import Spool

ROW_GROUP_ROWS = 262_144


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
        self._pending_rows = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        fd = create_private_file(self._tmp)
        self._sink = os.fdopen(fd, "wb")
        self._parquet = pq.ParquetWriter(
            self._sink, SCHEMA, compression="zstd", use_dictionary=True, write_statistics=True
        )
        self.spool = Spool(self.spool_path(self.path)) if spool else None
        if self.spool:
            self.spool.write_meta(self.metadata)

    @staticmethod
    def spool_path(path: Path) -> Path:
        return Path(path).with_name(f"{Path(path).name}.spool")

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        batch = conform(batch)
        if self.spool:
            self.spool.append(batch)
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.rows += batch.num_rows
        if self._pending_rows >= self._row_group_rows:
            self._flush()

    def update_metadata(self, **entries: Any) -> None:
        self.metadata.update(entries)
        if self.spool:
            self.spool.write_meta(self.metadata)

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=SCHEMA).unify_dictionaries()
        self._parquet.write_table(table, row_group_size=max(self._pending_rows, 1))
        self._pending, self._pending_rows = [], 0

    def close(self) -> Path:
        """Finish the file (metadata in the footer), move it into place, drop the spool."""
        self._flush()
        self._parquet.add_key_value_metadata(encode_metadata(self.metadata))
        self._parquet.close()
        self._sink.close()
        os.replace(self._tmp, self.path)
        give_to(self.path, self.owner)
        if self.spool:
            self.spool.close()
            self.spool.remove()
        return self.path

    def discard(self) -> None:
        """Stop and delete everything, spool included (nothing worth keeping was recorded)."""
        self.abort()
        if self.spool:
            self.spool.remove()

    def abort(self) -> None:
        """Stop without producing the file; the spool stays for `uvmtrace recover`."""
        try:
            self._parquet.close()
            self._sink.close()
        finally:
            self._tmp.unlink(missing_ok=True)
            if self.spool:
                self.spool.close()


def write_recording(path: Path, batches: list[pa.RecordBatch], metadata: dict[str, Any]) -> Path:
    """Write a complete recording in one go (tests, recover, demo fixtures)."""
    writer = RecordingWriter(path, metadata, spool=False)
    for batch in batches:
        writer.write(batch)
    return writer.close()
