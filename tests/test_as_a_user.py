"""The headline usage, as a real user walks it: an unprivileged account (a real account from
`useradd`, a real `sudo`) works in its own clone of the repository with the README's virtualenv:
`sudo .venv/bin/uvmtrace record` and `report` with relative paths, `uvmtrace doctor` without sudo.

The virtualenv is the one `sudo scripts/quickstart demo` makes: `python3 -m venv` with the
`python3` on sudo's PATH (the system's, which every account can run; the test run's own interpreter
may be pyenv's under root's 0700 home, as in CI) and `pip install .` of this checkout. It is built
once per module (~25 s) in a directory every account can read, and linked into each clone."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import _need
from tests.dockerimg import busybox_image
from tests.test_packaging import REPO, source_files
from uvmtrace.recording.reader import open_recording

# Debian's sudo `secure_path`: where `sudo scripts/quickstart` finds the python3 it builds from.
SUDO_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Checkout:
    files: Path  # what a fresh clone holds
    venv: Path  # what `scripts/quickstart demo` installs into .venv


def _run_or_fail(what: str, cmd: list, **kw) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    if r.returncode != 0:
        pytest.fail(f"{what} failed (exit {r.returncode}): {r.stderr[-2000:]}", pytrace=False)


@pytest.fixture(scope="module")
def checkout() -> Iterator[Checkout]:
    _need(os.geteuid() == 0, "needs root to create an account", ci_must_have=True)
    python = shutil.which("python3", path=SUDO_PATH)
    usable = python is not None and (
        subprocess.run([python, "-c", "import venv, ensurepip"], capture_output=True).returncode
        == 0
    )
    _need(usable, f"needs a python3 with venv (python3-venv) on {SUDO_PATH}", ci_must_have=True)
    top = Path(tempfile.mkdtemp(prefix="uvmtrace-as-a-user-", dir="/var/tmp"))
    old_umask = os.umask(0o022)  # what the accounts read must be readable by them
    try:
        top.chmod(0o755)
        files = top / "uvmtrace"
        for path in source_files():
            dest = files / path.relative_to(REPO)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        venv = top / "venv"
        _run_or_fail("python3 -m venv", [python, "-m", "venv", venv])
        _run_or_fail("pip install .", [venv / "bin/python", "-m", "pip", "install", "-q", "."],
                     cwd=files)  # fmt: skip
        for litter in ("build", "uvmtrace.egg-info"):  # the clones stay fresh
            shutil.rmtree(files / litter, ignore_errors=True)
    except BaseException:
        shutil.rmtree(top)
        raise
    finally:
        os.umask(old_umask)
    try:
        yield Checkout(files, venv)
    finally:
        shutil.rmtree(top)


@dataclass
class Account:
    name: str
    home: Path
    uid: int

    @property
    def clone(self) -> Path:
        return self.home / "uvmtrace"

    def run(self, script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        """`script` run by the account's own shell in its clone, through `sudo -u` (args: $1...)."""
        return subprocess.run(
            ["sudo", "-u", self.name, "-H", "--", "/bin/sh", "-c", f"cd ~/uvmtrace && {script}",
             "sh", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )  # fmt: skip


def _fresh_account(checkout: Checkout, sudoer: bool) -> Iterator[Account]:
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
        # The account's own clone, with the virtualenv `scripts/quickstart` would have made in it.
        _run_or_fail("the account's clone",
                     ["sudo", "-u", name, "-H", "--", "/bin/sh", "-c",
                      'cd && cp -R "$1" uvmtrace && ln -s "$2" uvmtrace/.venv',
                      "sh", checkout.files, checkout.venv])  # fmt: skip
        yield Account(name, Path(pw.pw_dir), pw.pw_uid)
    finally:
        rule.unlink(missing_ok=True)
        subprocess.run(["userdel", "--remove", name], capture_output=True)


@pytest.fixture
def sudoer(checkout: Checkout) -> Iterator[Account]:
    yield from _fresh_account(checkout, sudoer=True)


@pytest.fixture
def plain_user(checkout: Checkout) -> Iterator[Account]:
    yield from _fresh_account(checkout, sudoer=False)


def give_driver(account: Account, driver: Path) -> Path:
    """A copy of the stand-in driver and its test program in the account's home."""
    mine = account.home / "drv"
    shutil.copytree(driver, mine)
    for path in (mine, *mine.iterdir()):
        os.chown(path, account.uid, -1)
    return mine


# The README's commands, relative to the clone (sudo resets PATH).
SUDO_RECORD = 'sudo -n .venv/bin/uvmtrace record -q -o "$1" -- '
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
    out = sudoer.clone / "first run.parquet"
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


@pytest.mark.usefixtures("need_bpf", "need_docker")
def test_sudo_record_of_docker_run_from_an_account_of_the_docker_group(sudoer: Account) -> None:
    # The docker CLI runs as the account: it must be able to write the --cidfile uvmtrace adds
    # (the work dir is root's), and the container must run as it would without uvmtrace.
    sock_gid = os.stat("/var/run/docker.sock").st_gid
    _need(sock_gid != 0, "needs a Docker socket owned by its own group (docker)",
          ci_must_have=False)  # fmt: skip
    subprocess.run(["usermod", "-aG", grp.getgrgid(sock_gid).gr_name, sudoer.name], check=True)
    run = f"docker run --rm {busybox_image()} sh -c 'echo hello; exit 3'"
    plain = sudoer.run(run)
    assert (plain.returncode, plain.stdout) == (3, "hello\n"), plain.stderr
    r = sudoer.run(SUDO_RECORD + run, "box.parquet")
    assert (r.returncode, r.stdout) == (3, "hello\n"), r.stderr
    out = sudoer.clone / "box.parquet"
    assert out.stat().st_uid == sudoer.uid
    rec = open_recording(out)
    assert rec.metadata["run_as"] == sudoer.name and rec.metadata["exit_code"] == 3
    assert len(rec.metadata["container"]["id"]) == 64


# Writes 8 MiB next to the recording, then says who it ran as.
WRITER = """
import os
with open("sub/data.bin", "wb") as f:
    f.write(os.urandom(8 << 20))
print(os.getpid(), os.getuid(), flush=True)
"""


@pytest.mark.usefixtures("need_bpf")
def test_in_its_clone_the_account_records_and_reports_with_relative_paths(
    sudoer: Account,
) -> None:
    r = sudoer.run('mkdir sub && sudo -n .venv/bin/uvmtrace record -q -o sub/run.parquet '
                   '-- python3 -c "$1"', WRITER)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "ld.so" not in r.stderr
    pid, uid = map(int, r.stdout.split())
    assert uid == sudoer.uid  # the command ran as the account
    out = sudoer.clone / "sub/run.parquet"
    assert out.stat().st_uid == sudoer.uid
    rec = open_recording(out)
    assert pid in rec.scan().filter(pl.col("event") == "exec").collect().get_column("pid")
    report = sudoer.run("sudo -n .venv/bin/uvmtrace report sub/run.parquet")
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    assert "Most memory was charged to" in report.stdout
    as_json = sudoer.run("sudo -n .venv/bin/uvmtrace report --json sub/run.parquet")
    assert as_json.returncode == 0, as_json.stderr
    files = {f["path"]: f for f in json.loads(as_json.stdout)["attribution"]["by_file"]}
    # The page cache of what the program wrote, by its full path: all 8 MiB of it.
    written = files.get(str(sudoer.clone / "sub/data.bin"))
    assert written is not None and written["peak"] == 8 << 20, files


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
    r = plain_user.run(".venv/bin/uvmtrace doctor --json")
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1, r.stderr  # documented: recording is not possible (not root)
    doc = json.loads(r.stdout)
    assert doc["can_record"] is False
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["root"]["status"] == "missing"
    needs_root = [c for c in doc["checks"] if c["status"] == "needs root"]
    assert needs_root, "nothing was marked 'needs root'"
    # What needs no root was still checked: the compiler and the cgroup layout.
    assert checks["C compiler"]["status"] == "ok"
    assert any(c["status"] == "ok" for c in doc["checks"] if c["name"].startswith("cgroup"))
    table = plain_user.run(".venv/bin/uvmtrace doctor")
    assert "Traceback" not in table.stderr and table.returncode == 1
    assert "needs root" in table.stdout
