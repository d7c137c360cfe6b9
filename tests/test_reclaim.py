"""`record --reclaim-before-sizing`: before a sizing query answers, the clean page cache the
workload brought in is dropped; dirty pages and pages cached by others are not touched.

The workload reports, right after its own sysinfo() call returned, what the kernel says is
cached of each file (cachestat): that is the truth the recorder's claims are checked against.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from uvmtrace.recording.schema import make_batch
from uvmtrace.shim.reclaim_requests import ReclaimRequests, reclaim_env
from uvmtrace.shim.rundir import shim_env
from uvmtrace.tracer.reclaim import PageCacheLedger, cachestat

MIB = 1 << 20
COLD, SHARED, DIRTY = 96 * MIB, 64 * MIB, 32 * MIB

# Calls sysinfo() as TensorRT-LLM does (a PLT call: the global scope, where the shim is first),
# then prints how long it took and what is cached of each file.
SIZER = textwrap.dedent(
    """
    import ctypes, json, os, sys, time
    sys.path[:0] = [sys.argv[1]]
    from uvmtrace.tracer.reclaim import cachestat
    d = sys.argv[2]
    def read(name):
        with open(os.path.join(d, name), "rb") as f:
            while f.read(1 << 20):
                pass
    if len(sys.argv) > 3:
        read("cold.bin")
        read("shared.bin")
        fd = os.open(os.path.join(d, "dirty.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for _ in range(int(sys.argv[3]) >> 20):
            os.write(fd, os.urandom(1 << 20))
        os.close(fd)
    buf = ctypes.create_string_buffer(256)
    t = time.monotonic()
    rc = ctypes.CDLL(None).sysinfo(buf)
    took = time.monotonic() - t
    freeram = ctypes.c_ulong.from_buffer(buf, 5 * 8).value
    cached = {}
    for name in ("cold.bin", "shared.bin", "dirty.bin"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            fd = os.open(p, os.O_RDONLY)
            cached[name] = cachestat(fd)
            os.close(fd)
    print("sizer " + json.dumps({"rc": rc, "took": took, "freeram": freeram, "cached": cached}))
    """
)
SRC_ROOT = str(Path(__file__).resolve().parent.parent.parent)  # holds the `uvmtrace` namespace


def _sizer_result(stdout: str) -> dict:
    line = next(x for x in stdout.splitlines() if x.startswith("sizer "))
    return json.loads(line.removeprefix("sizer "))


def _write(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(MIB))
        f.flush()
        os.fsync(f.fileno())


def _drop(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


# ---- the shim's side: it waits for the recorder, but never longer than it was told ---------


def _run_sizer(shim: Path, run_dir: Path, timeout_ms: int) -> dict:
    env = shim_env(run_dir, lib=shim)
    env.update(reclaim_env(("sysinfo",), timeout_ms))
    r = subprocess.run(
        [sys.executable, "-c", SIZER, SRC_ROOT, str(run_dir)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return _sizer_result(r.stdout)


@pytest.mark.parametrize("depth", [0, 6], ids=["short run dir", "run dir past sun_path's 107"])
def test_a_recorder_that_never_answers_delays_the_query_only_up_to_the_timeout(
    shim: Path, tmp_path: Path, depth: int
) -> None:
    run_dir = tmp_path.joinpath(*["a-rather-long-directory-name"] * depth)
    run_dir.mkdir(parents=True, exist_ok=True)
    requests = ReclaimRequests(run_dir)  # listens, never answers
    try:
        res = _run_sizer(shim, run_dir, timeout_ms=400)
    finally:
        requests.close()
    assert res["rc"] == 0 and res["freeram"] > 0  # the real answer, unchanged
    assert 0.35 <= res["took"] < 5


def test_an_answer_releases_the_query_at_once(shim: Path, tmp_path: Path) -> None:
    requests = ReclaimRequests(tmp_path)
    seen: list[str] = []
    done = threading.Event()

    def answer() -> None:  # every query: libraries may call sysinfo() at import too
        while not done.is_set():
            if requests.wait(0.05):
                for req in requests.pending():
                    seen.append(req.function)
                    req.answer("ok 0")

    server = threading.Thread(target=answer)
    server.start()
    try:
        res = _run_sizer(shim, tmp_path, timeout_ms=20000)
    finally:
        done.set()
        server.join()
        requests.close()
    assert seen and set(seen) == {"sysinfo"}
    assert res["took"] < 10  # far below the 20 s it was allowed to wait


def test_without_a_recorder_the_query_does_not_wait(shim: Path, tmp_path: Path) -> None:
    res = _run_sizer(shim, tmp_path, timeout_ms=20000)
    assert res["rc"] == 0 and res["took"] < 10


# ---- the ledger: per file, what the workload added --------------------------------------------


def _filemap(event: str, ino: int, nbytes: int, path: str = "/w.bin") -> pa.RecordBatch:
    return make_batch({"ts_ns": 1, "stream": "kernel", "event": event, "pid": 7, "dev": 2049,
                       "inode": ino, "path": path, "bytes": nbytes})  # fmt: skip


def test_the_ledger_nets_adds_and_deletes_and_pending_rows_are_a_snapshot() -> None:
    ledger = PageCacheLedger()
    ledger.observe(_filemap("filemap_add", 1, 100 * MIB))
    ledger.observe(_filemap("filemap_delete", 1, 10 * MIB))
    files = ledger.with_pending([_filemap("filemap_add", 1, 5 * MIB),
                                 _filemap("filemap_add", 2, 1 * MIB, "/b")])  # fmt: skip
    assert [(f.inode, f.net) for f in files] == [(1, 95 * MIB), (2, 1 * MIB)]
    assert ledger.files[(2049, 1)].net == 90 * MIB  # pending rows do not stay


# ---- the whole loop, recorded -------------------------------------------------------------


@pytest.fixture
def recorded(need_bpf: None, shim: Path, tmp_path: Path) -> tuple[dict, Path, Path]:
    os.chmod(tmp_path, 0o755)
    _write(tmp_path / "cold.bin", COLD)
    _write(tmp_path / "shared.bin", SHARED)
    _drop(tmp_path / "cold.bin")
    _drop(tmp_path / "shared.bin")
    with open(tmp_path / "shared.bin", "rb") as f:  # half of it cached by us, another cgroup
        f.read(SHARED // 2)
    out = tmp_path / "run.parquet"
    r = subprocess.run(
        [sys.executable, "-m", "uvmtrace.cli", "record", "-q", "--as-root",
         "--reclaim-before-sizing", "-o", str(out), "--",
         sys.executable, "-c", SIZER, SRC_ROOT, str(tmp_path), str(DIRTY)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    yield _sizer_result(r.stdout), out, tmp_path
    for name in ("cold.bin", "shared.bin", "dirty.bin"):
        _drop(tmp_path / name)


def test_the_files_the_workload_brought_in_are_gone_when_it_asks(recorded) -> None:
    res, _, _ = recorded
    cached, _dirty = res["cached"]["cold.bin"]
    assert cached <= 2 * MIB  # read in full just before, dropped before the answer


def test_dirty_pages_and_pages_cached_by_others_are_not_touched(recorded) -> None:
    res, _, _ = recorded
    shared_cached, _ = res["cached"]["shared.bin"]
    dirty_cached, dirty = res["cached"]["dirty.bin"]
    assert shared_cached >= SHARED - MIB  # half ours before the run, half the workload's
    assert dirty_cached >= DIRTY - MIB
    assert dirty > 0  # still dirty: no write-back was started for it either


def test_the_recording_marks_the_reclaim_with_bytes_time_and_files(recorded) -> None:
    import polars as pl

    res, out, tmp_path = recorded
    df = pl.read_parquet(out)
    rows = df.filter(pl.col("event") == "reclaim")
    # Libraries may call sysinfo() at import: those reclaims drop what the workload itself had
    # read by then (its own .pyc files, when the shared machine had evicted them), never the
    # test's files. The sizer's own query is the one that drops cold.bin.
    freed = rows.filter(pl.col("bytes") > 0).sort("ts_ns").to_dicts()
    assert freed
    row = freed[-1]
    assert row["caller"] == "sysinfo" and row["item"] == "fadvise"
    assert abs(row["bytes"] - COLD) <= 2 * MIB
    assert 0 < row["dur_ns"] < 5_000_000_000
    detail = json.loads(row["text"])
    by_name = {Path(f["path"]).name: f for f in detail["files"] if f["path"]}
    assert "dirty" in by_name["dirty.bin"]["skipped"]
    # half cached before by someone else: skipped as shared (or, when its path was not
    # resolved while it was open, as unknown): never dropped either way
    assert "shared.bin" not in by_name or "shared" in by_name["shared.bin"]["skipped"]
    assert not any("uvmshim" in str(f["path"]) or ".uvm" in str(f["path"])
                   for f in detail["files"])  # fmt: skip
    assert by_name["cold.bin"]["freed"] == row["bytes"]
    dropped = df.filter(pl.col("event") == "reclaim_file")["path"].to_list()
    assert dropped.count(str(tmp_path / "cold.bin")) == 1
    assert not {str(tmp_path / n) for n in ("shared.bin", "dirty.bin")} & set(dropped)
    # the reclaim happened before the query answered
    query = df.filter((pl.col("stream") == "cuda") & (pl.col("event") == "sysinfo"))
    assert query.height >= 1 and query["ts_ns"].max() > row["ts_ns"]
    assert query.sort("ts_ns")["free_bytes"][-1] == res["freeram"]


def test_the_report_says_what_was_reclaimed_and_the_file_s_cache_is_gone(recorded) -> None:
    import polars as pl

    from uvmtrace.analysis.report import build_report

    _, out, tmp_path = recorded
    rep = build_report(out)
    assert rep["reclaim"]["requests"] >= 1
    # cold.bin, and whatever an import-time sysinfo() dropped of the workload's own reads
    rows = pl.read_parquet(out).filter(pl.col("event") == "reclaim")
    assert rep["reclaim"]["reclaimed_bytes"] == rows["bytes"].sum() >= COLD - 2 * MIB
    assert any(line.startswith("Reclaimed before sizing:") for line in rep["conclusion"])
    cold = next(f for f in rep["attribution"]["by_file"] if f["path"].endswith("cold.bin"))
    assert cold["peak"] >= COLD - 2 * MIB and cold["end"] <= 2 * MIB


def test_cachestat_sees_clean_and_dirty_pages(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    with open(p, "wb") as f:
        f.write(os.urandom(4 * MIB))
        fd = os.open(p, os.O_RDONLY)
        try:
            got = cachestat(fd)
            if got is None:
                pytest.skip("no cachestat (Linux < 6.5)")
            assert got[0] >= 4 * MIB and got[1] >= 4 * MIB - 64 * 1024
            f.flush()
            os.fsync(f.fileno())
            assert cachestat(fd) == (got[0], 0)
        finally:
            os.close(fd)
