"""Opens a recording, validates it, and hands it out as a lazy polars frame plus its metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from uvmtrace.recording import METADATA_KEY, SCHEMA_VERSION
from uvmtrace.recording.errors import RecordingError
from uvmtrace.recording.metadata import Metadata

PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class Recording:
    path: Path
    metadata: dict[str, Any]  # as written (JSON); `meta` is the same, typed
    num_rows: int
    meta: Metadata = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", Metadata.from_json(self.metadata))

    def scan(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.path)

    @property
    def streams(self) -> set[str]:
        return set(
            self.scan().select(pl.col("stream").unique()).collect().get_column("stream").to_list()
        )


def open_recording(path: str | Path) -> Recording:
    """Validate `path` and return it; any problem becomes one RecordingError line."""
    path = Path(path)
    if not path.exists():
        raise RecordingError(f"{path}: no such file")
    if not path.is_file():
        raise RecordingError(f"{path}: not a file")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    if head != PARQUET_MAGIC:
        raise RecordingError(f"{path}: not a Parquet file (so not a uvmtrace recording)")
    if size < 12 or tail != PARQUET_MAGIC:
        raise RecordingError(
            f"{path}: truncated Parquet file (no footer); if a spool survives, "
            "run `uvmtrace recover`"
        )
    # polars reads the footer itself: no pyarrow (and numpy) import for a report's start-up
    try:
        footer = pl.read_parquet_metadata(path)
        num_rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise RecordingError(f"{path}: corrupt Parquet footer ({exc})") from None
    raw = footer.get(METADATA_KEY.decode())
    if raw is None:
        raise RecordingError(f"{path}: a Parquet file, but not a uvmtrace recording")
    try:
        metadata = json.loads(raw)
    except ValueError:
        raise RecordingError(f"{path}: recording metadata is not valid JSON") from None
    version = metadata.get("schema_version")
    if not isinstance(version, int):
        raise RecordingError(f"{path}: recording metadata has no schema version")
    if version > SCHEMA_VERSION:
        raise RecordingError(
            f"{path}: recorded with schema version {version}, this uvmtrace reads up to "
            f"{SCHEMA_VERSION}; upgrade uvmtrace"
        )
    return Recording(path=path, metadata=metadata, num_rows=num_rows)
