"""Drain an in-kernel aggregation map (hash: key with a time bucket -> struct agg_val) in batches.

Only buckets that ended more than `grace_ns` ago are taken (and deleted) while recording, so an
entry is never read while an event can still add to it; `final=True` takes everything (the
probes are detached by then). Keys and values land in numpy arrays via BPF_MAP_LOOKUP_BATCH.
"""

from __future__ import annotations

import ctypes as ct
import errno

import numpy as np

from uvmtrace.probes.layouts import AGG_VAL

GRACE_NS = 20_000_000


class AggDrainer:
    def __init__(self, lib: ct.CDLL, map_fd: int, key: np.dtype, max_entries: int) -> None:
        self.lib = lib
        self.fd = map_fd
        self.key = key
        self.max = max_entries
        self._keys = np.zeros(max_entries, key)
        self._vals = np.zeros(max_entries, AGG_VAL)

    def _lookup_all(self) -> int:
        """Fill the key/value buffers with the map's contents; returns the count."""
        total = 0
        token = ct.c_uint32(0)
        count = ct.c_uint32(0)
        first = True
        while total < self.max:
            count.value = self.max - total
            res = self.lib.bpf_lookup_batch(
                self.fd,
                None if first else ct.byref(token),
                ct.byref(token),
                self._keys.ctypes.data + total * self.key.itemsize,
                self._vals.ctypes.data + total * AGG_VAL.itemsize,
                ct.byref(count),
            )
            err = ct.get_errno()
            total += count.value
            first = False
            if res != 0:
                if err in (errno.ENOENT, 0):
                    break
                raise OSError(err, f"BPF_MAP_LOOKUP_BATCH: {errno.errorcode.get(err, err)}")
            if count.value == 0:
                break
        return total

    def drain(self, now_ns: int, bucket_ns: int, *, final: bool) -> tuple[np.ndarray, np.ndarray]:
        n = self._lookup_all()
        keys, vals = self._keys[:n], self._vals[:n]
        if not final:
            done = keys["bucket"].astype(np.int64) + bucket_ns <= now_ns - GRACE_NS
            keys, vals = keys[done], vals[done]
        keys, vals = keys.copy(), vals.copy()
        if keys.size:
            cnt = ct.c_uint32(keys.size)
            if self.lib.bpf_delete_batch(self.fd, keys.ctypes.data, ct.byref(cnt)) != 0:
                # Kernels before 5.6 have no batch delete: one at a time.
                base = keys.ctypes.data
                for i in range(keys.size):
                    self.lib.bpf_delete_elem(self.fd, base + i * self.key.itemsize)
        return keys, vals
