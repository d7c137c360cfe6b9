"""The recording format: writer -> reader round trip, bad files, and crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from uvmtrace.recording.errors import RecordingError
from uvmtrace.recording.reader import open_recording
from uvmtrace.recording.recover import recover
from uvmtrace.recording.schema import COLUMN_NAMES, METADATA_KEY, SCHEMA, make_batch
from uvmtrace.recording.writer import RecordingWriter, write_recording

FULL_ROW = {
    "ts_ns": [1_000, 2_000],
    "stream": ["kernel", "cuda"],
    "event": ["memcg_charge", "cuMemGetInfo"],
    "pid": [10, 11],
    "tid": [10, 12],
    "comm": ["python", "trtllm"],
    "cgroup_id": [2**63 + 5, 7],
    "item": ["NR_FILE_PAGES", None],
    "bytes": [-4096, 1 << 40],
    "addr": [2**64 - 1, 0x7F00_0000_0000],
    "free_bytes": [None, 80 << 30],
    "total_bytes": [None, 96 << 30],
    "result": [None, 0],
    "result_name": [None, "CUDA_SUCCESS"],
    "flags": [3, None],
    "path": ["/models/w.safetensors", None],
    "caller": [None, "libtorch_cuda.so!c10::cuda::MemGetInfo"],
    "count": [12, 1],
    "dur_ns": [None, 850],
    "ns_pid": [1, 11],
    "pid_ns": [4026531836, 4026531836],
    "dev": [2049, None],
    "inode": [123456, None],
    "text": [None, "[TensorRT-LLM][INFO] Allocated 44.31 GiB for max tokens"],
}
META = {"command": ["python", "x.py"], "host": "h", "probes": {"memcg": "tracepoint"}}


def test_every_column_and_the_metadata_survive_a_round_trip(tmp_path: Path) -> None:
    out = write_recording(tmp_path / "r.parquet", [make_batch(FULL_ROW)], META)
    rec = open_recording(out)
    assert rec.metadata["command"] == ["python", "x.py"]
    assert rec.metadata["probes"] == {"memcg": "tracepoint"}
    assert rec.metadata["schema_version"] == 1
    df = rec.scan().collect()
    assert tuple(df.columns) == COLUMN_NAMES
    for name, values in FULL_ROW.items():
        assert df.get_column(name).to_list() == values, name
    assert pq.read_schema(out).remove_metadata().equals(SCHEMA)


def test_strings_are_dictionary_encoded_on_disk(tmp_path: Path) -> None:
    out = write_recording(tmp_path / "r.parquet", [make_batch(FULL_ROW)], META)
    col = pq.ParquetFile(out).metadata.row_group(0).column(COLUMN_NAMES.index("event"))
    assert any("DICT" in str(e) for e in col.encodings)


def test_the_file_is_written_in_row_groups_and_is_private(tmp_path: Path) -> None:
    w = RecordingWriter(tmp_path / "r.parquet", META, row_group_rows=2)
    for _ in range(3):
        w.write(make_batch(FULL_ROW))
    w.close()
    assert pq.ParquetFile(tmp_path / "r.parquet").num_row_groups == 3
    assert (tmp_path / "r.parquet").stat().st_mode & 0o077 == 0
    assert not RecordingWriter.spool_path(tmp_path / "r.parquet").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not a file"),
        (b"hello world, not parquet", "not a Parquet file"),
        ("truncated", "truncated"),
        ("foreign", "not a uvmtrace recording"),
        ("newer", "schema version 99"),
    ],
)
def test_bad_files_get_one_clear_error(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "bad.parquet"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "truncated":
        good = write_recording(tmp_path / "g.parquet", [make_batch(FULL_ROW)], META)
        path.write_bytes(good.read_bytes()[:-100])
    elif content == "foreign":
        pq.write_table(pl.DataFrame({"a": [1]}).to_arrow(), path)
    elif content == "newer":
        good = write_recording(tmp_path / "g.parquet", [make_batch(FULL_ROW)], META)
        table = pq.read_table(good)
        table = table.replace_schema_metadata({METADATA_KEY: b'{"schema_version": 99}'})
        pq.write_table(table, path)
    with pytest.raises(RecordingError, match=message):
        open_recording(path)


def test_missing_file_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such file"):
        open_recording(tmp_path / "absent.parquet")


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from uvmtrace.recording.schema import make_batch
    from uvmtrace.recording.writer import RecordingWriter
    w = RecordingWriter(Path(sys.argv[1]), {"command": ["killed"]})
    for i in range(5):
        w.write(make_batch({"ts_ns": list(range(i * 100, i * 100 + 100)), "stream": "kernel",
                            "event": "page_fault", "bytes": 4096}))
    # Start a sixth batch and die half-way through writing it.
    sink = w.spool._sink
    sink.write(b"\\xff\\xff\\xff\\xff\\x80\\x01\\x00\\x00" + b"\\x01" * 100)
    os.kill(os.getpid(), 9)
    """
)


def test_recover_rebuilds_every_complete_batch_of_a_killed_writer(tmp_path: Path) -> None:
    out = tmp_path / "run.parquet"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)])
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    spool = RecordingWriter.spool_path(out)
    rows, torn = recover(spool, out)
    assert rows == 500
    assert torn > 0
    rec = open_recording(out)
    assert rec.metadata["command"] == ["killed"]
    assert rec.metadata["recovered"] is True
    df = rec.scan().collect()
    assert df.get_column("ts_ns").to_list() == list(range(500))


def test_recover_cli_prints_one_line_for_a_non_spool(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "uvmtrace.cli", "recover", str(tmp_path), "-o", "x.parquet"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0
    assert "not a uvmtrace spool" in r.stderr
    assert os.path.exists(tmp_path)


def test_recover_under_sudo_gives_the_recording_to_the_user(tmp_path: Path, need_root) -> None:
    # `record` under sudo hands its file to the user behind sudo; the recording a spool becomes
    # is theirs too (root-owned 0600, they could not even read it).
    out = tmp_path / "run.parquet"
    assert subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)]).returncode == -9
    env = dict(os.environ, SUDO_UID="65534", SUDO_GID="65534")
    spool = RecordingWriter.spool_path(out)
    r = subprocess.run(
        [sys.executable, "-m", "uvmtrace.cli", "recover", str(spool), "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    st = out.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)
