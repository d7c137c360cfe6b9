"""Shim files -> Arrow batches of the recording's `cuda` stream, incrementally.

The recorder calls `poll()` while the command runs and `close()` after it ended. Each call reads
only what was appended since the last one: records are fixed-size, so new slots are one pread and
one numpy view. A record counts once its last word (`call`) is set; a slot claimed but not
complete yet is re-checked on the next poll, and one still open at `close()` is counted as torn
(its thread was killed mid-write).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from uvmtrace.recording.cuda_functions import RECORDED
from uvmtrace.recording.schema import make_batch
from uvmtrace.shim import file_layout as layout
from uvmtrace.shim.names import cuda_result_name, nvml_result_name, sysinfo_result_name
from uvmtrace.shim.pids import HostPid, proc_host_pid

# Most slots read per pread: bounds memory while catching up on a large file.
READ_SLOTS = 1 << 20

LIB = {f.id: f.lib for f in RECORDED}
QUERIES = np.array([f.id for f in RECORDED if f.kind == "query"])
WITH_BYTES = np.array([f.id for f in RECORDED if f.bytes])
WITH_FLAGS = np.array([f.id for f in RECORDED if f.flags])
# What the record's `aux` word holds, as written into `item` (none: not shown); `location` is
# cuMemCreate's CUmemLocation (_aux_word).
AUX_WORD = {
    "stream": "stream 0x{:x}",
    "pool": "pool 0x{:x}",
    "handle": "handle 0x{:x}",
    "device": "device {}",
    "nvml_device": "device 0x{:x}",
}
AUX_ITEM = {f.id: AUX_WORD[f.aux] for f in RECORDED if f.aux in AUX_WORD}
LOCATION = {f.id for f in RECORDED if f.aux == "location"}


@dataclass
class _ShimFile:
    path: Path
    fd: int
    header: np.void
    cursor: int = 0
    pending: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    syms: dict[int, str] = field(default_factory=dict)
    syms_offset: int = 0
    records: int = 0
    last_header: np.void | None = None


class ShimDecoder:
    def __init__(
        self,
        run_dir: Path,
        host_pid: Callable[[int, int], int | None] | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> None:
        """accept: which files ("<ns pid>-<pid ns>.uvm" / ".off") to read; default all (the
        run dir of one recording). A directory shared by several runs holds others' too."""
        self.run_dir = Path(run_dir)
        self._accept = accept
        self._host_pid = HostPid(host_pid or proc_host_pid)
        self._files: dict[str, _ShimFile] = {}
        self._skipped: dict[str, str] = {}
        # Notes the shim left: `.off` a process ran without it, `.note` something went wrong.
        self._notes: dict[str, dict[str, dict[str, str | int]]] = {"off": {}, "note": {}}
        self._torn = 0
        self._closed = False

    # ------------------------------------------------------------ public
    def poll(self) -> list[pa.RecordBatch]:
        """New complete records from every per-process file (batches of at most READ_SLOTS)."""
        self._discover()
        return [b for f in self._files.values() for b in self._read_new(f, final=False)]

    def close(self) -> list[pa.RecordBatch]:
        """Everything not returned yet; slots still uncommitted now are counted as torn."""
        if self._closed:
            return []
        self._discover(final=True)
        out = []
        for f in self._files.values():
            out += self._read_new(f, final=True)
            os.close(f.fd)
        self._closed = True
        return out

    def stats(self) -> dict:
        headers = [f.last_header for f in self._files.values() if f.last_header is not None]
        return {
            "files": len(self._files),
            "records": sum(f.records for f in self._files.values()),
            "torn": self._torn + sum(len(f.pending) for f in self._files.values()),
            "dropped": int(sum(int(h["dropped"]) for h in headers)),
            "passthrough": int(sum(int(h["passthrough"]) for h in headers)),
            "lookups": int(sum(int(h["lookups"]) for h in headers)),
            "skipped_files": dict(self._skipped),
            "without_shim": list(self._notes["off"].values()),
            "notes": list(self._notes["note"].values()),
        }

    # ----------------------------------------------------------- files
    def _discover(self, final: bool = False) -> None:
        try:
            entries = list(os.scandir(self.run_dir))
        except OSError:
            return
        for entry in entries:
            name = entry.name
            if self._accept is not None and not self._accept(name):
                continue
            kind = name.rpartition(".")[2]
            if kind in self._notes and name not in self._notes[kind]:
                self._read_note(entry, self._notes[kind])
            if not name.endswith(".uvm") or name in self._files:
                continue
            f = self._open(self.run_dir / name, final)
            if f is not None:
                self._files[name] = f
                self._skipped.pop(name, None)

    @staticmethod
    def _read_note(entry: os.DirEntry, into: dict[str, dict[str, str | int]]) -> None:
        """ "<why>\t<exe>" in <ns pid>-<ns>.off / .note."""
        try:
            if not entry.is_file(follow_symlinks=False):
                return
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as f:
                text = f.read(8192).decode(errors="replace")
        except OSError:
            return
        why, _, exe = text.rstrip("\n").partition("\t")
        pid = entry.name.split("-", 1)[0]
        into[entry.name] = {
            "pid": int(pid) if pid.isdigit() else -1,
            "exe": exe,
            "why": why,
        }

    def _open(self, path: Path, final: bool) -> _ShimFile | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            self._skipped[path.name] = exc.strerror or "cannot open"
            return None
        why = None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            why = "not a regular file"
        else:
            raw = os.pread(fd, layout.HEADER_DTYPE.itemsize, 0)
            if len(raw) < layout.HEADER_DTYPE.itemsize:
                why = "header not written yet"
            else:
                h = np.frombuffer(raw, dtype=layout.HEADER_DTYPE)[0]
                if int(h["magic"]) != layout.MAGIC:
                    why = "header not written yet" if int(h["magic"]) == 0 else "not a shim file"
                elif (int(h["version"]), int(h["record_size"]), int(h["header_size"])) != (
                    layout.VERSION,
                    layout.RECORD_SIZE,
                    layout.HEADER_SIZE,
                ):
                    why = f"shim file version {int(h['version'])} not understood"
                else:
                    return _ShimFile(path=path, fd=fd, header=h)
        os.close(fd)
        if final or why != "header not written yet":
            self._skipped[path.name] = why
        return None

    def _header(self, f: _ShimFile) -> np.void:
        raw = os.pread(f.fd, layout.HEADER_DTYPE.itemsize, 0)
        return np.frombuffer(raw, dtype=layout.HEADER_DTYPE)[0]

    def _read_new(self, f: _ShimFile, final: bool) -> list[pa.RecordBatch]:
        header = f.last_header = self._header(f)
        size = os.fstat(f.fd).st_size
        in_file = max(0, (size - layout.HEADER_SIZE) // layout.RECORD_SIZE)
        claimed = min(int(header["next_slot"]), in_file)
        parts = []
        if len(f.pending):
            again = self._read_slots(f, f.pending)
            done = again["call"] != 0
            parts.append(again[done])
            f.pending = f.pending[~done]
        while f.cursor < claimed:
            count = min(claimed - f.cursor, READ_SLOTS)
            raw = os.pread(f.fd, count * layout.RECORD_SIZE, self._offset(f.cursor))
            recs = np.frombuffer(raw, dtype=layout.RECORD_DTYPE)
            done = recs["call"] != 0
            parts.append(recs if done.all() else recs[done])
            if not done.all():
                f.pending = np.concatenate([f.pending, f.cursor + np.flatnonzero(~done)])
            f.cursor += len(recs)
            if len(recs) < count:
                break
        if final:
            self._torn += len(f.pending)
            f.pending = f.pending[:0]
        batches = []
        for recs in parts:
            if len(recs):
                f.records += len(recs)
                batches.append(self._batch(f, header, recs))
        return batches

    def _read_slots(self, f: _ShimFile, slots: np.ndarray) -> np.ndarray:
        raws = [os.pread(f.fd, layout.RECORD_SIZE, self._offset(int(s))) for s in slots]
        return np.frombuffer(b"".join(raws), dtype=layout.RECORD_DTYPE)

    @staticmethod
    def _offset(slot: int) -> int:
        return layout.HEADER_SIZE + slot * layout.RECORD_SIZE

    # ---------------------------------------------------------- columns
    def _batch(self, f: _ShimFile, header: np.void, recs: np.ndarray) -> pa.RecordBatch:
        n = len(recs)
        func = layout.func(recs)
        result = recs["result"].astype(np.int64)
        ok = result == 0
        is_query = np.isin(func, QUERIES)
        pid_ns = int(header["pid_ns"])
        ns_pid = int(header["pid"])
        host = self._host_pid(pid_ns, ns_pid)
        tid_index, uniq_tid = _encode(recs["tid"])
        host_tids = pa.array([self._host_pid(pid_ns, int(t)) for t in uniq_tid], type=pa.int32())
        tid_col = host_tids.take(tid_index)
        comm = header["comm"].split(b"\0", 1)[0].decode(errors="replace")
        return make_batch(
            {
                "ts_ns": recs["ts_ns"].astype(np.int64),
                "stream": _dictionary(pa.array(np.zeros(n, np.int32)), ["cuda"]),
                "event": _lookup(func, layout.FUNCTIONS),
                "pid": pa.nulls(n, pa.int32()) if host is None else np.full(n, host, np.int32),
                "tid": tid_col,
                "comm": _dictionary(pa.array(np.zeros(n, np.int32)), [comm]),
                "item": self._items(recs, func),
                "bytes": pa.array(recs["bytes"].astype(np.int64), mask=~np.isin(func, WITH_BYTES)),
                "addr": pa.array(recs["addr"], mask=is_query),
                "free_bytes": pa.array(recs["addr"].astype(np.int64), mask=~(is_query & ok)),
                "total_bytes": pa.array(recs["flags"].astype(np.int64), mask=~(is_query & ok)),
                "result": result,
                "result_name": self._result_names(func, result, layout.errno(recs)),
                "flags": pa.array(recs["flags"].astype(np.int64), mask=~np.isin(func, WITH_FLAGS)),
                "caller": self._callers(f, recs["caller"]),
                "dur_ns": layout.dur_ns(recs),
                "ns_pid": pa.array(np.full(n, ns_pid, dtype=np.int32)),
                "pid_ns": pa.array(np.full(n, pid_ns, dtype=np.uint64)),
            },
            num_rows=n,
        )

    def _items(self, recs: np.ndarray, func: np.ndarray) -> pa.Array:
        words: list[str | None] = [None]
        index = np.zeros(len(recs), dtype=np.int32)
        for fid in np.flatnonzero(np.bincount(func, minlength=1)):
            rows = np.flatnonzero(func == fid)
            idx, uniq = _encode(recs["aux"][rows])
            first = [_aux_word(int(fid), int(aux)) for aux in uniq]
            index[rows] = idx.to_numpy(zero_copy_only=False) + len(words)
            words += first
        return _dictionary(pa.array(index), words)

    def _result_names(self, func: np.ndarray, result: np.ndarray, err: np.ndarray) -> pa.Array:
        # One int64 key per (function, result, errno): hashed once, named once per distinct key.
        key = (
            (func.astype(np.int64) << 48)
            | ((result & 0xFFFFFFFF) << 16)
            | (err.astype(np.int64) & 0xFFFF)
        )
        index, uniq = _encode(key)
        names = []
        for k in uniq.tolist():
            fid, res, e = k >> 48, np.int32(np.uint32((k >> 16) & 0xFFFFFFFF)), k & 0xFFFF
            lib = LIB.get(int(fid))
            if lib == "libc":
                names.append(sysinfo_result_name(int(res), e))
            elif lib == "nvml":
                names.append(nvml_result_name(int(res)))
            else:
                names.append(cuda_result_name(int(res)))
        return _dictionary(index, names)

    def _callers(self, f: _ShimFile, addrs: np.ndarray) -> pa.Array:
        index, uniq = _encode(addrs)
        if any(int(a) not in f.syms for a in uniq):
            self._read_syms(f)
        names = [f.syms.get(int(a), f"0x{int(a):x}") for a in uniq]
        return _dictionary(index, names)

    def _read_syms(self, f: _ShimFile) -> None:
        path = f.path.with_name(f.path.name + ".syms")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            data = b""
            while chunk := os.pread(fd, 1 << 20, f.syms_offset + len(data)):
                data += chunk
        finally:
            os.close(fd)
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        f.syms_offset += len(whole)
        for line in whole.decode(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) == 5:
                f.syms[int(parts[0], 16)] = caller_name(int(parts[0], 16), *parts[1:])


def _aux_word(fid: int, aux: int) -> str | None:
    if fid in LOCATION:
        # CUmemLocation of the allocation: type (1 device, 2 host, 3 host NUMA node) and id.
        return f"location {aux >> 32}:{aux & 0xFFFFFFFF}"
    word = AUX_ITEM.get(fid)
    return word.format(aux) if word else None


def caller_name(addr: int, module: str, base: str, symbol: str, symbol_addr: str) -> str:
    """`module!symbol` (module basename; a module-relative offset where no symbol is known)."""
    mod = os.path.basename(module) or "?"
    if symbol:
        return f"{mod}!{symbol}"
    return f"{mod}!+0x{addr - int(base or '0', 16):x}"


def _lookup(codes: np.ndarray, names: dict[int, str]) -> pa.Array:
    index, uniq = _encode(codes)
    return _dictionary(index, [names.get(int(c), f"func{int(c)}") for c in uniq])


def _encode(values: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Hash-based (no sort) row -> distinct-value index, and the distinct values."""
    enc = pa.array(values).dictionary_encode()
    return enc.indices, enc.dictionary.to_numpy(zero_copy_only=False)


def _dictionary(index: pa.Array, words: list[str | None]) -> pa.Array:
    """Row -> word as a dictionary array built from the distinct words only; a None word is a
    null row (dictionaries themselves must hold no nulls to be unified across batches)."""
    index = index.cast(pa.int32())
    if None in words:
        nulls = np.array([w is None for w in words])
        idx = index.to_numpy(zero_copy_only=False)
        index = pa.array(idx, mask=nulls[idx])
        words = [w or "" for w in words]
    return pa.DictionaryArray.from_arrays(index, pa.array(words, pa.string()))
