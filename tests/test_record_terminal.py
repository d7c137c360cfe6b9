"""`uvmtrace record` in the foreground of a terminal hands the command the terminal, as a shell
hands it to a job: the command reads it and sets its modes (no SIGTTIN/SIGTTOU stop), ^C and ^Z
typed on it reach the command directly, and uvmtrace takes the terminal back when it ends."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.test_output_tee import Terminal, python, record_on

pytestmark = pytest.mark.usefixtures("need_bpf")


def session_on_terminal() -> None:  # a login shell's session: the terminal is its own
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def record_in_foreground(
    terminal: Terminal, out: Path, command: list[str], quiet: bool = True
) -> subprocess.Popen[bytes]:
    """uvmtrace as a terminal's session leader, so in its foreground, stdin the terminal."""
    return record_on(terminal, out, command, quiet=quiet, stdin=terminal.slave,
                     start_new_session=True, preexec_fn=session_on_terminal)  # fmt: skip


def ended(proc: subprocess.Popen[bytes], terminal: Terminal, timeout: float = 60) -> int:
    """The recorder's exit code; a recorder or command stopped by the terminal fails the test."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Its whole session: the command, in a process group of its own, too.
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
        proc.wait()
        pytest.fail(f"record did not end (stopped?); shown: {terminal.shown!r}")


def test_the_command_reads_a_line_typed_on_the_terminal(tmp_path: Path) -> None:
    terminal = Terminal(isig=True)
    proc = record_in_foreground(terminal, tmp_path / "r.parquet",
                                ["sh", "-c", "echo ready; read x; echo got:$x"])  # fmt: skip
    terminal.wait_for(b"ready\n")
    terminal.type(b"hello there\n")
    assert ended(proc, terminal) == 0
    assert terminal.closed_by_all() == b"ready\ngot:hello there\n"


def test_the_command_sets_the_terminals_modes_without_being_stopped(tmp_path: Path) -> None:
    program = (
        "import os, termios\n"
        "a = termios.tcgetattr(0)\n"
        "termios.tcsetattr(0, termios.TCSANOW, a)\n"
        "print('ok', os.tcgetpgrp(0) == os.getpgrp())\n"
    )
    terminal = Terminal(isig=True)
    proc = record_in_foreground(terminal, tmp_path / "m.parquet", python(program))
    assert ended(proc, terminal) == 0
    assert terminal.closed_by_all() == b"ok True\n"  # the command's group is the foreground


def test_ctrl_c_reaches_the_command_exactly_once(tmp_path: Path) -> None:
    # Counts SIGINTs, waits a while after the first for a second one, exits with its own code.
    program = (
        "import signal, sys, time\n"
        "n = 0\n"
        "def count(*_):\n"
        "    global n\n"
        "    n += 1\n"
        "signal.signal(signal.SIGINT, count)\n"
        "print('started', flush=True)\n"
        "deadline = time.monotonic() + 60\n"
        "while n == 0 and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "time.sleep(2)\n"
        "print('sigint', n, flush=True)\n"
        "sys.exit(7)\n"
    )
    terminal = Terminal(isig=True)
    proc = record_in_foreground(terminal, tmp_path / "c.parquet", python(program))
    terminal.wait_for(b"started\n")
    terminal.type(b"\x03")
    assert ended(proc, terminal) == 7  # the command's code: uvmtrace itself was not interrupted
    assert terminal.closed_by_all() == b"started\nsigint 1\n"
    assert (tmp_path / "c.parquet").exists()


def test_the_terminal_is_the_recorders_again_for_its_last_lines(tmp_path: Path) -> None:
    # TOSTOP: a background process writing to the terminal is stopped (SIGTTOU). The recorder
    # writes its summary after the command; stopped there, it would never end.
    terminal = Terminal(isig=True)
    attrs = termios.tcgetattr(terminal.slave)
    attrs[3] |= termios.TOSTOP
    termios.tcsetattr(terminal.slave, termios.TCSANOW, attrs)
    proc = record_in_foreground(terminal, tmp_path / "e.parquet", ["sh", "-c", "echo done; exit 3"],
                                quiet=False)  # fmt: skip
    assert ended(proc, terminal) == 3
    lines = terminal.closed_by_all().replace(b"\r\x1b[K", b"").splitlines()
    assert b"done" in lines
    assert lines[-1].startswith(b"uvmtrace: wrote ")


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="needs bash (job control)")
def test_ctrl_z_stops_the_job_and_fg_continues_it_with_the_terminal(tmp_path: Path) -> None:
    # As a user runs it: in an interactive shell with job control, ^Z then `fg`.
    terminal = Terminal(isig=True)
    out = tmp_path / "z.parquet"
    command = "echo ready; read x; echo got:$x"
    shell = subprocess.Popen(
        ["/bin/bash", "--norc", "--noprofile", "-i"],
        stdin=terminal.slave, stdout=terminal.slave, stderr=terminal.slave,
        start_new_session=True, preexec_fn=session_on_terminal, cwd=tmp_path,
        env={**os.environ, "PS1": "$ ", "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    try:
        terminal.type(
            f"{sys.executable} -m uvmtrace.cli record -q -o {out} -- sh -c '{command}'\n".encode()
        )
        terminal.wait_for(b"ready\n")
        terminal.type(b"\x1a")  # ^Z: the command stops, then the recorder: the shell says so
        terminal.wait_for(b"Stopped")
        terminal.type(b"fg\n")  # the recorder continues, and gives the command the terminal
        time.sleep(1)
        terminal.type(b"after\n")
        terminal.wait_for(b"got:after")
        terminal.type(b"echo exit:$?\n")  # the job's code, once it has ended
        terminal.wait_for(b"exit:0")
        terminal.type(b"exit\n")
        assert shell.wait(timeout=30) == 0
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
    assert out.exists()
