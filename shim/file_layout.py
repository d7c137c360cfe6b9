"""The shim's file layout as numpy dtypes; mirrors uvmshim.h (a test compiles the header and
checks every size and offset against these). The function ids come from shim/functions.h."""

from __future__ import annotations

import numpy as np

from uvmtrace.recording.cuda_functions import RECORDED

MAGIC = 0x314D4853564D5655
VERSION = 2
HEADER_SIZE = 65536
RECORD_SIZE = 64
CHUNK_RECORDS = 12288
DUR_US = 0x80000000

HEADER_DTYPE = np.dtype(
    [
        ("magic", "<u8"),
        ("version", "<u4"),
        ("header_size", "<u4"),
        ("record_size", "<u4"),
        ("chunk_records", "<u4"),
        ("pid", "<i4"),
        ("ppid", "<i4"),
        ("pid_ns", "<u8"),
        ("start_ns", "<u8"),
        ("next_slot", "<u8"),
        ("dropped", "<u8"),
        ("passthrough", "<u8"),
        ("lookups", "<u8"),
        ("comm", "S16"),
        ("exe", "S1024"),
    ]
)

RECORD_DTYPE = np.dtype(
    [
        ("ts_ns", "<u8"),
        ("caller", "<u8"),
        ("bytes", "<u8"),
        ("addr", "<u8"),  # memory queries: free
        ("aux", "<u8"),
        ("flags", "<u8"),  # memory queries: total
        ("dur", "<u4"),  # ns below DUR_US, else DUR_US | microseconds
        ("tid", "<i4"),
        ("result", "<i4"),
        ("call", "<u4"),  # func | variant << 16 | errno << 24; 0 until the record is whole
    ]
)


def func(recs: np.ndarray) -> np.ndarray:
    return recs["call"] & 0xFFFF


def errno(recs: np.ndarray) -> np.ndarray:
    return recs["call"] >> 24


def dur_ns(recs: np.ndarray) -> np.ndarray:
    dur = recs["dur"].astype(np.int64)
    long = dur >= DUR_US
    return np.where(long, (dur & (DUR_US - 1)) * 1000, dur)


# Function ids (the record's `func`, shim/functions.h): the event name of a record.
FUNCTIONS: dict[int, str] = {f.id: f.name for f in RECORDED}
