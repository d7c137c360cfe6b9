"""Every `-o` a user types works, natively and with `docker run` (whose bind mounts take neither
a relative path nor a `:`): relative, with spaces, with colons."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.test_record import uvmtrace
from tests.test_record_shim import driver_in_container
from uvmtrace.recording.reader import open_recording

OUTPUTS = ["runs/run.parquet", "my runs/first run.parquet", "runs:12/a:b.parquet"]


@pytest.mark.usefixtures("need_bpf", "need_docker")
@pytest.mark.parametrize("output", OUTPUTS)
def test_a_container_run_records_to_any_relative_output(
    driver: Path, tmp_path: Path, output: str
) -> None:
    (tmp_path / output).parent.mkdir()
    r = uvmtrace("record", "-q", "-o", output, "--", *driver_in_container(driver, "--rm"),
                 cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rec = open_recording(tmp_path / output)
    # the shim wrote through the bind mount of the run dir
    calls = rec.scan().filter(pl.col("stream") == "cuda").collect()
    assert {"cuMemGetInfo", "cuMemAlloc"} <= set(calls.get_column("event").to_list()), (
        r.stderr,
        rec.metadata.get("shim"),
    )
    assert list(tmp_path.rglob(".*.uvmtrace")) == []  # the work directory is gone


@pytest.mark.usefixtures("need_bpf")
def test_a_native_run_records_to_a_spaced_relative_output(driver: Path, tmp_path: Path) -> None:
    output = "my runs:1/run.parquet"
    (tmp_path / output).parent.mkdir()
    # The program runs in another directory than the recorder: the shim's run directory is
    # given to it as an absolute path.
    program = ["sh", "-c", f'cd / && exec env LD_LIBRARY_PATH="{driver}" "{driver}/driver_user"']
    r = uvmtrace("record", "-q", "-o", output, "--", *program, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = open_recording(tmp_path / output).scan().filter(pl.col("stream") == "cuda").collect()
    assert rows.height > 0
