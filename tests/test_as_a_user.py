"""The headline usage, as a real user walks it: an unprivileged account runs `sudo uvmtrace
record` (a real account from `useradd`, a real `sudo`), and `uvmtrace doctor` without sudo."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import _need
from uvmtrace.recording.reader import open_recording


@dataclass
class Account:
    name: str
    home: Path
    uid: int

    def run(self, script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        """`script` run by the account's own shell in its home, through `sudo -u` (args: $1...)."""
        return subprocess.run(
            ["sudo", "-u", self.name, "-H", "--", "/bin/sh", "-c", f"cd && {script}", "sh", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _fresh_account(sudoer: bool) -> Iterator[Account]:
    _need(os.geteuid() == 0, "needs root to create an account", ci_must_have=True)
    _need(shutil.which("sudo") is not None, "needs sudo (scripts/setup-host installs it)",
          ci_must_have=True)  # fmt: skip
    name = f"uvmt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    rule = Path(f"/etc/sudoers.d/{name}")
    try:
        if sudoer:  # what an admin grants a user who traces workloads
            rule.write_text(f"{name} ALL=(root) NOPASSWD: ALL\n")
            rule.chmod(0o440)
        pw = pwd.getpwnam(name)
        yield Account(name, Path(pw.pw_dir), pw.pw_uid)
    finally:
        rule.unlink(missing_ok=True)
        subprocess.run(["userdel", "--remove", name], capture_output=True)


@pytest.fixture
def sudoer() -> Iterator[Account]:
    yield from _fresh_account(sudoer=True)


@pytest.fixture
def plain_user() -> Iterator[Account]:
    yield from _fresh_account(sudoer=False)


def give_driver(account: Account, driver: Path) -> Path:
    """A copy of the stand-in driver and its test program in the account's home."""
    mine = account.home / "drv"
    shutil.copytree(driver, mine)
    for path in (mine, *mine.iterdir()):
        os.chown(path, account.uid, -1)
    return mine


SUDO_RECORD = f'sudo -n {sys.executable} -m uvmtrace.cli record -q -o "$1" -- '
PROGRAM = 'env LD_LIBRARY_PATH="$HOME/drv" "$HOME/drv/driver_user" freeram'


@pytest.mark.usefixtures("need_bpf")
def test_sudo_record_from_an_account_has_the_programs_own_sysinfo(
    sudoer: Account, driver: Path
) -> None:
    give_driver(sudoer, driver)
    r = sudoer.run(SUDO_RECORD + PROGRAM, "first run.parquet")
    assert r.returncode == 0, r.stderr
    assert "cannot be preloaded" not in r.stderr
    (freeram,) = (int(line.split()[1]) for line in r.stdout.splitlines() if "freeram" in line)
    out = sudoer.home / "first run.parquet"
    assert out.stat().st_uid == sudoer.uid  # the user's file, not root's
    rec = open_recording(out)
    assert rec.metadata["run_as"] == sudoer.name
    calls = rec.scan().filter((pl.col("stream") == "cuda") & (pl.col("event") == "sysinfo"))
    rows = calls.collect()
    assert rows.height == 1, rec.metadata.get("not_traced")
    assert rows.get_column("free_bytes")[0] == freeram  # the number the program itself read
    # The command ran as the account: the process that called sysinfo is not root's.
    assert rows.get_column("pid")[0] in set(
        rec.scan().filter(pl.col("event") == "exec").collect().get_column("pid").to_list()
    )


@pytest.mark.usefixtures("need_bpf")
def test_when_the_shim_cannot_load_the_recording_and_report_say_why(
    sudoer: Account, driver: Path, tmp_path: Path
) -> None:
    give_driver(sudoer, driver)
    # The output lies in root's private directory: the account cannot reach the shim's run
    # directory next to it, so its processes could not record a call.
    out = tmp_path / "r.parquet"
    os.chmod(tmp_path, 0o700)
    r = sudoer.run(SUDO_RECORD + PROGRAM, str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("freeram ")  # the program ran as it would without uvmtrace
    assert "ld.so" not in r.stderr
    rec = open_recording(out)
    (entry,) = [e for e in rec.metadata["not_traced"] if e["what"].startswith("CUDA")]
    assert f"shim not loadable as {sudoer.name}" in entry["why"]
    assert str(out.parent) in entry["why"]
    report = subprocess.run(
        [sys.executable, "-m", "uvmtrace.cli", "report", str(out)],
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    assert f"shim not loadable as {sudoer.name}" in " ".join(report.stdout.split())


def test_doctor_as_a_plain_user_checks_what_it_can_and_marks_the_rest(
    plain_user: Account,
) -> None:
    if plain_user.run(f"{sys.executable} -c 'import uvmtrace.cli.main'").returncode != 0:
        # e.g. a pyenv Python under root's 0700 home: the account cannot run this interpreter
        pytest.skip(f"the new account cannot run {sys.executable} with uvmtrace importable")
    r = plain_user.run(f"{sys.executable} -m uvmtrace.cli doctor --json")
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1  # documented: recording is not possible (not root)
    doc = json.loads(r.stdout)
    assert doc["can_record"] is False
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["root"]["status"] == "missing"
    needs_root = [c for c in doc["checks"] if c["status"] == "needs root"]
    assert needs_root, "nothing was marked 'needs root'"
    # What needs no root was still checked: the compiler and the cgroup layout.
    assert checks["C compiler"]["status"] == "ok"
    assert any(c["status"] == "ok" for c in doc["checks"] if c["name"].startswith("cgroup"))
    table = plain_user.run(f"{sys.executable} -m uvmtrace.cli doctor")
    assert "Traceback" not in table.stderr and table.returncode == 1
    assert "needs root" in table.stdout
