"""Whatever happens to uvmtrace, the traced program runs as it would without it, and nothing
recorded is lost: the recorder killed mid-run, a full disk, a second `record` to the same -o."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_any_program import uvmtrace_cgroups
from tests.test_record import UVMTRACE, events, uvmtrace
from uvmtrace.recording.reader import open_recording

pytestmark = pytest.mark.usefixtures("need_bpf")

LINES = 40
# Prints "started", then numbered lines on stdout and stderr for ~2 s, then leaves a mark.
SLOW_PRINTER = (
    "import sys, time\n"
    "print('started', flush=True)\n"
    f"for i in range({LINES}):\n"
    "    print('line', i, flush=True)\n"
    "    print('err', i, file=sys.stderr, flush=True)\n"
    "    time.sleep(0.05)\n"
    "open(sys.argv[1], 'w').write('done')\n"
    "sys.exit(4)\n"
)


def expected(prefix: str) -> list[str]:
    return [f"{prefix} {i}" for i in range(LINES)]


def test_a_killed_recorder_leaves_the_command_running_to_completion(tmp_path: Path) -> None:
    out = tmp_path / "k.parquet"
    mark = tmp_path / "finished"
    before = uvmtrace_cgroups()
    proc = subprocess.Popen(
        [*UVMTRACE, "record", "-q", "-o", str(out), "--",
         sys.executable, "-c", SLOW_PRINTER, str(mark)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "started\n"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    # The output reaches its destination until the command's end, complete and in order
    # (a few KiB: reading one pipe after the other cannot block the writer).
    assert proc.stdout.read().splitlines() == expected("line")
    assert proc.stderr.read().splitlines() == expected("err")
    assert mark.read_text() == "done"
    assert not out.exists()
    assert (tmp_path / "k.parquet.spool").is_dir()
    left = uvmtrace_cgroups() - before
    assert {Path(p).name for p in left} <= {f"uvmtrace-{proc.pid}"}

    # The same -o again: the spool is kept under a new name and said so, the killed
    # recorder's cgroup, work dir and unfinished file are gone.
    again = uvmtrace("record", "-o", str(out), "--", "sh", "-c", "exit 6")
    assert again.returncode == 6, again.stderr
    assert "Traceback" not in again.stderr
    kept = tmp_path / "k.parquet.spool.1"
    assert kept.is_dir() and str(kept) in again.stderr
    assert open_recording(out).metadata["exit_code"] == 6
    assert uvmtrace_cgroups() - before == set()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finished", "k.parquet", kept.name]

    # What the killed recorder had written is a recording, and says it was recovered.
    rec = tmp_path / "killed.parquet"
    r = uvmtrace("recover", str(kept), "-o", str(rec))
    assert r.returncode == 0, r.stderr
    recovered = open_recording(rec)
    assert recovered.metadata["recovered"] is True
    # the recorder's own exec row, written before the command ran (the exec tracepoint's row
    # is there too when the probes were drained before the kill: a matter of timing)
    df = events(rec)
    assert df.filter((df["event"] == "exec") & df["comm"].is_null()).height == 1
    assert kept.is_dir()  # recover leaves the spool: it can be retried
    # Its report says so first, and does not trust it.
    report = uvmtrace("report", str(rec))
    assert report.returncode == 0, report.stderr
    text = " ".join(report.stdout.split())  # as one line, whatever the terminal's width
    assert text.startswith(
        "Recovered from the spool of a recording that was cut short (the recording stopped "
        "before the command ended"
    )
    assert "Trust: low" in text and "recording cut short, recovered from its spool" in text


def test_an_existing_recording_is_kept_unless_force(tmp_path: Path) -> None:
    out = tmp_path / "a.parquet"
    assert uvmtrace("record", "-q", "-o", str(out), "--", "true").returncode == 0
    r = uvmtrace("record", "-q", "-o", str(out), "--", "sh", "-c", "exit 3")
    assert r.returncode == 2 and r.stderr.count("\n") == 1  # a usage error, not the command's
    assert "exists; use --force" in r.stderr
    assert open_recording(out).metadata["exit_code"] == 0
    r = uvmtrace("record", "-q", "--force", "-o", str(out), "--", "sh", "-c", "exit 3")
    assert r.returncode == 3
    assert open_recording(out).metadata["exit_code"] == 3


@pytest.fixture
def small_disk(tmp_path: Path, need_root) -> Path:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_recording_not_the_command(small_disk: Path, tmp_path: Path) -> None:
    out = small_disk / "r.parquet"
    # Enough faults that --raw fills 2 MiB many times over.
    workload = (
        "import mmap, sys\n"
        "m = mmap.mmap(-1, 256 << 20)\n"
        "for o in range(0, 256 << 20, 4096):\n"
        "    m[o] = 1\n"
        "print('done', flush=True)\n"
        "sys.exit(5)\n"
    )
    before = uvmtrace_cgroups()
    r = uvmtrace("record", "-q", "--raw", "-o", str(out), "--", sys.executable, "-c", workload)
    assert (r.returncode, r.stdout) == (5, "done\n")
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("uvmtrace: error: ") and "No space left on device" in line
    spool = small_disk / "r.parquet.spool"
    assert f"uvmtrace recover {spool}" in line
    assert not out.exists()
    assert [p.name for p in small_disk.iterdir()] == ["r.parquet.spool"]
    assert uvmtrace_cgroups() - before == set()

    # With room again (here: elsewhere), the spool becomes a recording that says it was cut.
    rec = tmp_path / "r.parquet"
    rr = uvmtrace("recover", str(spool), "-o", str(rec))
    assert rr.returncode == 0, rr.stderr
    df = events(rec)
    # Every event the error line says was recorded is in the recovered file (how many fit before
    # the disk filled depends on what else the run dir holds there, e.g. the shim's record files).
    recorded = int(re.search(r"([\d,]+) events recorded until then", line)[1].replace(",", ""))
    assert df.height == recorded > 0
    assert open_recording(rec).metadata["recovered"] is True
