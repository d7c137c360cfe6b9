"""Column layout of a uvmtrace recording (docs/recording.md).

Every row is one event; `stream` says which source produced it. Producers (probes, shim,
samplers) build Arrow batches with `make_batch`, naming only the columns they fill; the rest are
null, which Parquet stores almost for free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from uvmtrace.recording import METADATA_KEY, SCHEMA_VERSION, UVMTRACE_VERSION

STREAMS = ("kernel", "cuda", "sample", "proc", "log", "snapshot")


def _dict(index: pa.DataType | None = None) -> pa.DataType:
    return pa.dictionary(index or pa.int32(), pa.string())


# Order matters only for readability of `SELECT *`; readers select by name.
COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("ts_ns", pa.int64(), "CLOCK_MONOTONIC ns (bpf_ktime_get_ns and clock_gettime agree)"),
    ("stream", _dict(pa.int8()), "kernel | cuda | sample | proc | log | snapshot"),
    ("event", _dict(pa.int16()), "memcg_charge, page_fault, mmap, cuMemGetInfo, meminfo, ..."),
    ("pid", pa.int32(), "host pid (tgid)"),
    ("tid", pa.int32(), "host tid"),
    ("comm", _dict(), "task command name"),
    ("cgroup_id", pa.uint64(), "cgroup directory inode number"),
    ("item", _dict(), "stat item: NR_FILE_PAGES, MEMCG_KMEM, MemFree, ..."),
    ("bytes", pa.int64(), "signed delta or size in bytes"),
    ("addr", pa.uint64(), "address (fault, mapping, device pointer)"),
    ("free_bytes", pa.int64(), "free memory a query returned"),
    ("total_bytes", pa.int64(), "total memory a query returned"),
    ("result", pa.int64(), "raw return code"),
    ("result_name", _dict(), "return code by name (CUDA_SUCCESS, ...)"),
    ("flags", pa.int64(), "flags / prot / error code"),
    ("path", _dict(), "file behind a mapping or page-cache page, or a file read"),
    ("caller", _dict(), "module+symbol that made a call"),
    ("count", pa.int64(), "events folded into this row (aggregated rows)"),
    ("dur_ns", pa.int64(), "duration of a call"),
    ("ns_pid", pa.int32(), "pid inside the caller's pid namespace"),
    ("pid_ns", pa.uint64(), "pid namespace inode"),
    ("dev", pa.uint64(), "device number of a file"),
    ("inode", pa.uint64(), "inode number of a file"),
    ("text", pa.string(), "free text: a log line, a command line"),
)

SCHEMA = pa.schema([pa.field(name, typ, nullable=True) for name, typ, _ in COLUMNS])
COLUMN_NAMES = tuple(SCHEMA.names)


def make_batch(columns: Mapping[str, Any], num_rows: int | None = None) -> pa.RecordBatch:
    """Build a batch in the recording schema from the columns a producer has.

    Values may be Python sequences, numpy arrays or Arrow arrays; scalars broadcast. Unknown
    column names are a programming error and raise KeyError.
    """
    unknown = set(columns) - set(COLUMN_NAMES)
    if unknown:
        raise KeyError(f"not recording columns: {sorted(unknown)}")
    if num_rows is None:
        lengths = {len(v) for v in columns.values() if _is_sequence(v)}
        if len(lengths) > 1:
            raise ValueError(f"columns differ in length: {sorted(lengths)}")
        num_rows = lengths.pop() if lengths else 1
    arrays = []
    for field in SCHEMA:
        value = columns.get(field.name)
        if value is None:
            arrays.append(pa.nulls(num_rows, field.type))
            continue
        if not _is_sequence(value):
            value = [value] * num_rows
        arrays.append(_as_array(value, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def _is_sequence(value: Any) -> bool:
    return not isinstance(value, (str, bytes, int, float)) and hasattr(value, "__len__")


def _as_array(value: Any, typ: pa.DataType) -> pa.Array:
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if pa.types.is_dictionary(typ):
        arr = value if isinstance(value, pa.Array) else pa.array(value, type=pa.string())
        if pa.types.is_dictionary(arr.type):
            return arr.cast(typ)
        return arr.cast(pa.string()).dictionary_encode().cast(typ)
    if isinstance(value, pa.Array):
        return value.cast(typ)
    return pa.array(value, type=typ)


def conform(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Return `batch` in exactly the recording schema (adds missing columns as nulls)."""
    if batch.schema.equals(SCHEMA):
        return batch
    cols = {name: batch.column(name) for name in batch.schema.names if name in COLUMN_NAMES}
    return make_batch(cols, num_rows=batch.num_rows)


def encode_metadata(meta: Mapping[str, Any]) -> dict[bytes, bytes]:
    body = {"schema_version": SCHEMA_VERSION, "uvmtrace_version": UVMTRACE_VERSION, **meta}
    return {METADATA_KEY: json.dumps(body, sort_keys=True, default=str).encode()}


def split_lost(lost: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """The metadata's `lost` counts as (lost, nested): "lost" means events a probe dropped (a
    full map or ring, torn shim records); `<probe>_nested` counts are program runs the kernel
    skipped because that program already ran on the CPU (host-wide, not all the workload's)."""
    counts = {str(k): int(v) for k, v in lost.items()}
    nested = {k: v for k, v in counts.items() if k.endswith("_nested")}
    return {k: v for k, v in counts.items() if k not in nested}, nested
