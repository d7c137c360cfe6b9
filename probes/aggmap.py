"""Drain an in-kernel aggregation hash (key with a time bucket and a flush number ->
struct agg_val) in batches, and read the per-CPU slots once the probes are detached.

The BPF side never writes an entry after inserting it (events.h, struct agg_slot), so every
entry can be taken (and deleted) at any time: nothing can add to an entry between our read and
our delete. Keys and values land in numpy arrays via BPF_MAP_LOOKUP_BATCH.
"""

from __future__ import annotations

import ctypes as ct

import numpy as np

from uvmtrace.probes.bpfmaps import BpfMap
from uvmtrace.probes.event_dtypes import AGG_SLOT, AGG_VAL


class AggDrainer:
    def __init__(self, table: BpfMap, key: np.dtype, max_entries: int) -> None:
        self.table = table
        self.key = key
        self.max = max_entries
        self._keys = np.zeros(max_entries, key)
        self._vals = np.zeros(max_entries, AGG_VAL)

    def _lookup_all(self) -> int:
        """Fill the key/value buffers with the map's contents; returns the count."""
        total = 0
        token = ct.c_uint32(0)
        first = True
        while total < self.max:
            count, done = self.table.lookup_batch(
                None if first else ct.addressof(token),
                ct.addressof(token),
                self._keys.ctypes.data + total * self.key.itemsize,
                self._vals.ctypes.data + total * AGG_VAL.itemsize,
                self.max - total,
            )
            total += count
            first = False
            if done:
                break
        return total

    def drain(self) -> tuple[np.ndarray, np.ndarray]:
        n = self._lookup_all()
        keys, vals = self._keys[:n].copy(), self._vals[:n].copy()
        if keys.size and not self.table.delete_batch(keys.ctypes.data, keys.size):
            # Kernels before 5.6 have no batch delete: one at a time.
            base = keys.ctypes.data
            for i in range(keys.size):
                self.table.delete(base + i * self.key.itemsize)
        return keys, vals


def read_slots(table: BpfMap, n: int) -> np.ndarray:
    """A per-CPU slot array as (n, ncpus) struct agg_slot; only once the probes are detached."""
    out = np.zeros((n, table.ncpus), AGG_SLOT)
    for i in range(n):
        table.lookup_into(i.to_bytes(4, "little"), out[i].ctypes.data)
    return out


def slot_entries(
    slots: np.ndarray, key: np.dtype, fill: dict[str, np.ndarray | str]
) -> tuple[np.ndarray, np.ndarray]:
    """The non-empty slots as (keys, values) like a drain's. `fill`: key field -> a slot field's
    name, or an array over slot indexes (e.g. the fault code a slot stands for)."""
    used = slots["count"] > 0
    index = np.broadcast_to(np.arange(slots.shape[0])[:, None], slots.shape)[used]
    flat = slots[used]
    keys = np.zeros(flat.size, key)
    keys["bucket"] = flat["bucket"]
    keys["pid"] = flat["pid"]
    for name, value in fill.items():
        keys[name] = flat[value] if isinstance(value, str) else value[index]
    vals = np.zeros(flat.size, AGG_VAL)
    for name in ("sum", "count", "tid", "comm"):
        vals[name] = flat[name]
    return keys, vals
