"""The shim's file layout as numpy dtypes; mirrors uvmshim.h (a test compiles the header and
checks every size and offset against these). The function ids come from shim/functions.h."""

from __future__ import annotations

import numpy as np

from uvmtrace.recording.cuda_functions import RECORDED

MAGIC = 0x314D4853564D5655
VERSION = 1
HEADER_SIZE = 65536
RECORD_SIZE = 96
CHUNK_RECORDS = 8192
COMMITTED = 0x314D5655

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
        ("dur_ns", "<u8"),
        ("bytes", "<u8"),
        ("addr", "<u8"),
        ("aux", "<u8"),
        ("free", "<u8"),
        ("total", "<u8"),
        ("flags", "<u8"),
        ("caller", "<u8"),
        ("tid", "<i4"),
        ("result", "<i4"),
        ("func", "<u2"),
        ("variant", "<u2"),
        ("err", "<u4"),
        ("reserved", "<u4"),
        ("commit", "<u4"),
    ]
)

# Function ids (the record's `func`, shim/functions.h): the event name of a record.
FUNCTIONS: dict[int, str] = {f.id: f.name for f in RECORDED}
