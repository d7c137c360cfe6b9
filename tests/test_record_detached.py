"""`record -- docker run -d ...`: the client returns at once, the container runs on; uvmtrace
follows it until it exits (or Ctrl-C, passed on to it) and never leaves it running with an
LD_PRELOAD into the directory it deletes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from tests.test_record import UVMTRACE, uvmtrace
from tests.test_record_shim import driver_in_container
from uvmtrace.recording.reader import open_recording

pytestmark = pytest.mark.usefixtures("need_bpf", "need_docker")


def state(name: str) -> dict | None:
    r = subprocess.run(["docker", "inspect", name], capture_output=True, text=True)
    return json.loads(r.stdout)[0]["State"] if r.returncode == 0 else None


def test_a_detached_container_is_followed_until_it_exits(driver: Path, tmp_path: Path) -> None:
    # The CUDA calls come a second after the client has returned.
    argv = driver_in_container(driver, "-d", shell="sleep 1; exec /drv/driver_user direct")
    name = argv[argv.index("--name") + 1]
    out = tmp_path / "d.parquet"
    try:
        r = uvmtrace("record", "-q", "-o", str(out), "--", *argv, timeout=120)
        assert r.returncode == 0, r.stderr
        rec = open_recording(out)
        assert r.stdout.strip() == rec.metadata["container"]["id"]  # what `docker run -d` prints
        assert rec.metadata["container"]["detached"] is True
        assert rec.metadata["container"]["exit_code"] == 0
        events = rec.scan().filter(pl.col("stream") == "cuda").collect().get_column("event")
        assert {"cuMemGetInfo", "cuMemAlloc"} <= set(events.to_list())
        assert state(name)["Running"] is False  # returned only once it had exited
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_ctrl_c_is_passed_to_a_detached_container(driver: Path, tmp_path: Path) -> None:
    script = 'trap "exit 3" INT; /drv/driver_user direct; sleep 60 & wait'
    argv = driver_in_container(driver, "-d", "--rm", shell=script)
    name = argv[argv.index("--name") + 1]
    out = tmp_path / "c.parquet"
    proc = subprocess.Popen([*UVMTRACE, "record", "-o", str(out), "--", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for line in proc.stderr:
            if "following the detached container" in line:
                break
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    assert proc.returncode == 0  # the command, `docker run -d`, succeeded
    rec = open_recording(out)
    assert rec.metadata["container"]["exit_code"] == 3  # its INT trap ran
    assert rec.metadata["signals_forwarded"] == ["SIGINT"]
    assert state(name) is None  # --rm: gone, nothing left pointing into a deleted directory
