"""The tee between the command and the terminal: the command's output is always whole; the copy
the recorder scans for framework log lines may be cut when the recorder lags, and what is cut is
counted (the recording lists it under not_traced). On a terminal the command writes to a
terminal of the same size (a pty the tee passes on byte for byte), as it would without us."""

from __future__ import annotations

import fcntl
import os
import pwd
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

import pytest

from uvmtrace.tracer.output_tee import OutputTee

UVMTRACE = [sys.executable, "-m", "uvmtrace.cli"]


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class Terminal:
    """A real terminal (a pty) for uvmtrace to write to: what it shows is read back byte for
    byte (raw: no \\n -> \\r\\n here, so the bytes are exactly those written to it)."""

    def __init__(self, rows: int = 33, cols: int = 97, *, isig: bool = False) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        if isig:  # ^C typed on it interrupts its foreground process group
            attrs = termios.tcgetattr(self.slave)
            attrs[3] |= termios.ISIG
            termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self.resize(rows, cols)
        self.name = os.ttyname(self.slave)
        self._shown = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every writer has closed it
                return
            if not chunk:
                return
            with self._lock:
                self._shown += chunk

    @property
    def shown(self) -> bytes:
        with self._lock:
            return bytes(self._shown)

    def wait_for(self, data: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while data not in self.shown:
            assert time.monotonic() < deadline, f"{data!r} not shown; shown: {self.shown!r}"
            time.sleep(0.02)

    def closed_by_all(self, timeout: float = 60) -> bytes:
        """Everything shown, once nobody (the command, the tee) writes to it any more."""
        os.close(self.slave)
        self._reader.join(timeout)
        assert not self._reader.is_alive(), f"still open; shown: {self.shown!r}"
        os.close(self.master)
        return self.shown


def python(program: str, *args: str) -> list[str]:
    return [sys.executable, "-c", program, *args]


def record_on(
    terminal: Terminal, out: Path, command: list[str], quiet: bool = True, **popen
) -> subprocess.Popen[bytes]:
    """`uvmtrace record -- COMMAND` with its stdout and stderr on `terminal`."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(
        [*UVMTRACE, "record", *(["-q"] if quiet else []), "-o", str(out), "--", *command],
        stdout=terminal.slave, stderr=terminal.slave, **popen,
    )  # fmt: skip


# ------------------------------------------------------------------- the tee alone (no root)
def test_a_recorder_that_never_reads_loses_only_its_copy_and_the_loss_is_counted(
    tmp_path: Path,
) -> None:
    output = b"".join(b"line %07d of the command's output\n" % i for i in range(120_000))
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        tee = OutputTee(sinks=(out.fileno(), err.fileno()))
        assert not os.isatty(tee.stdout_w) and not os.isatty(tee.stderr_w)  # files: pipes
        with os.fdopen(os.dup(tee.stdout_w), "wb") as command_stdout:
            command_stdout.write(output)  # ~4 MiB: more than the copy pipe holds
        tee.command_started()
        assert tee.proc.wait(timeout=60) == 0
    assert (tmp_path / "out").read_bytes() == output  # the command's output is whole
    copied = read_all(tee.copies[0])
    dropped = tee.dropped()
    assert dropped["stdout"] > 0
    assert len(copied) + dropped["stdout"] == len(output)
    assert output.startswith(copied)
    assert dropped["stderr"] == 0 and read_all(tee.copies[1]) == b""


def test_stdout_on_a_terminal_and_stderr_in_a_file_get_a_pty_and_a_pipe(tmp_path: Path) -> None:
    terminal = Terminal(rows=20, cols=50)
    with open(tmp_path / "err", "wb") as err:
        tee = OutputTee(sinks=(terminal.slave, err.fileno()))
        assert os.isatty(tee.stdout_w) and not os.isatty(tee.stderr_w)
        assert os.get_terminal_size(tee.stdout_w) == (50, 20)
        os.write(tee.stdout_w, b"\x1b[1mbold\x1b[0m\r\nnext\n")
        os.write(tee.stderr_w, b"to the file\n")
        os.write(tee.stdout_w, b"no newline")
        tee.command_started()
        assert tee.proc.wait(timeout=60) == 0
    assert terminal.closed_by_all() == b"\x1b[1mbold\x1b[0m\r\nnext\nno newline"
    assert (tmp_path / "err").read_bytes() == b"to the file\n"
    assert read_all(tee.copies[0]) == b"\x1b[1mbold\x1b[0m\r\nnext\nno newline"
    assert read_all(tee.copies[1]) == b"to the file\n"
    assert tee.dropped() == {"stdout": 0, "stderr": 0}
    tee.close()


def test_two_terminals_get_two_ptys_one_terminal_gets_one(tmp_path: Path) -> None:
    first, second = Terminal(rows=10, cols=40), Terminal(rows=11, cols=41)
    tee = OutputTee(sinks=(first.slave, second.slave))
    assert os.get_terminal_size(tee.stdout_w) == (40, 10)
    assert os.get_terminal_size(tee.stderr_w) == (41, 11)
    os.write(tee.stdout_w, b"out\n")
    os.write(tee.stderr_w, b"err\n")
    tee.command_started()
    assert tee.proc.wait(timeout=60) == 0
    assert (first.closed_by_all(), second.closed_by_all()) == (b"out\n", b"err\n")
    assert tee.dropped() == {"stdout": 0, "stderr": 0}
    tee.close()

    both = Terminal()
    tee = OutputTee(sinks=(both.slave, both.slave))
    assert tee.stdout_w == tee.stderr_w and len(tee.copies) == 1
    tee.command_started()
    assert tee.proc.wait(timeout=60) == 0
    assert tee.dropped() == {"stdout and stderr": 0}
    tee.close()
    both.closed_by_all()


def test_without_ptys_a_terminal_gets_pipes_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_devpts() -> tuple[int, int]:
        raise FileNotFoundError(2, "No such file or directory", "/dev/ptmx")

    terminal = Terminal()
    monkeypatch.setattr(os, "openpty", no_devpts)  # a container without /dev/pts, say
    tee = OutputTee(sinks=(terminal.slave, terminal.slave))
    assert not os.isatty(tee.stdout_w) and not os.isatty(tee.stderr_w)
    os.write(tee.stdout_w, b"still shown\n")
    tee.command_started()
    assert tee.proc.wait(timeout=60) == 0
    assert tee.dropped() == {"stdout": 0, "stderr": 0}
    tee.close()
    assert terminal.closed_by_all() == b"still shown\n"


def test_the_pty_follows_the_terminal_size_even_without_the_recorder() -> None:
    terminal = Terminal(rows=24, cols=80)
    tee = OutputTee(sinks=(terminal.slave, terminal.slave))
    tee.close()  # the recorder is gone: the tee alone keeps the size in step
    terminal.resize(50, 132)
    deadline = time.monotonic() + 10
    while os.get_terminal_size(tee.stdout_w) != (132, 50):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    tee.command_started()
    assert tee.proc.wait(timeout=60) == 0
    terminal.closed_by_all()


# ------------------------------------------------------------ `uvmtrace record` on a terminal
needs_bpf = pytest.mark.usefixtures("need_bpf")

# Says what it writes to; then bytes a terminal program writes: CR LF, a progress bar redrawn
# with \r, colours, stderr between stdout lines, and a last line without a newline.
TERMINAL_PROGRAM = (
    "import os, sys\n"
    "print(sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty(),"
    " os.get_terminal_size(), os.ttyname(0) == sys.argv[1] != os.ttyname(1) == os.ttyname(2),"
    " flush=True)\n"
    "for fd, data in ((1, b'a\\r\\nb\\n'), (2, b'\\rprogress  50%'), (2, b'\\rprogress 100%\\n'),"
    " (1, b'\\x1b[31mred\\x1b[0m\\n'), (2, b'warning\\n'), (1, b'partial')):\n"
    "    os.write(fd, data)\n"
    "sys.exit(3)\n"
)


@needs_bpf
def test_on_a_terminal_the_command_writes_to_a_terminal_of_its_size_byte_for_byte(
    tmp_path: Path,
) -> None:
    terminal = Terminal(rows=33, cols=97)
    # stdin the same terminal, as in a shell: it stays the command's stdin.
    proc = record_on(terminal, tmp_path / "t.parquet", python(TERMINAL_PROGRAM, terminal.name),
                     stdin=terminal.slave)  # fmt: skip
    assert proc.wait(timeout=120) == 3  # the command's exit code
    assert terminal.closed_by_all() == (
        b"True True True os.terminal_size(columns=97, lines=33) True\n"
        b"a\r\nb\n\rprogress  50%\rprogress 100%\n\x1b[31mred\x1b[0m\nwarning\npartial"
    )


@needs_bpf
def test_the_invoking_user_can_reopen_its_output_as_on_its_terminal(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    terminal = Terminal()
    os.fchown(terminal.slave, nobody.pw_uid, -1)  # a login terminal belongs to its user
    as_nobody = {**os.environ, "SUDO_UID": str(nobody.pw_uid), "SUDO_GID": str(nobody.pw_gid)}
    script = "id -un; echo out > /dev/stdout; echo err > /dev/stderr"  # as shell scripts do
    proc = record_on(terminal, tmp_path / "u.parquet", ["sh", "-c", script], env=as_nobody)
    assert proc.wait(timeout=120) == 0
    assert terminal.closed_by_all() == b"nobody\nout\nerr\n"


# "started", then lines on stdout and stderr; each SIGWINCH prints the size it sees; once told
# a size (in the file argv[1]), waits until its terminal has that size, prints it, exits 4.
SLOW_PRINTER = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGWINCH, lambda *_: print('winch', tuple(os.get_terminal_size()),"
    " flush=True))\n"
    "print('started', flush=True)\n"
    "for i in range(20):\n"
    "    print('line', i, flush=True)\n"
    "    print('err', i, file=sys.stderr, flush=True)\n"
    "    time.sleep(0.05)\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.05)\n"
    "want, deadline = tuple(map(int, open(sys.argv[1]).read().split())), time.time() + 30\n"
    "while tuple(os.get_terminal_size()) != want and time.time() < deadline:\n"
    "    time.sleep(0.05)\n"
    "print('size', tuple(os.get_terminal_size()), flush=True)\n"
    "sys.exit(4)\n"
)


def tell_size(path: Path, cols: int, rows: int) -> None:
    (path.parent / "tmp").write_text(f"{cols} {rows}")
    (path.parent / "tmp").rename(path)


LINES = b"".join(b"line %d\nerr %d\n" % (i, i) for i in range(20))


@needs_bpf
def test_a_killed_recorder_leaves_the_command_its_terminal(tmp_path: Path) -> None:
    terminal = Terminal(rows=24, cols=80)
    size = tmp_path / "size"
    proc = record_on(
        terminal, tmp_path / "k.parquet",
        ["sh", "-c", '"$@"; echo "exit $?"', "sh", *python(SLOW_PRINTER, str(size))],
    )  # fmt: skip
    terminal.wait_for(b"started\n")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    terminal.resize(40, 120)  # only the tee is left to tell the command's pty
    tell_size(size, 120, 40)
    # The command ran to its end, its output whole and in the order written on one terminal,
    # and its exit code is what its parent (here a shell) gets.
    assert terminal.closed_by_all() == b"started\n" + LINES + b"size (120, 40)\nexit 4\n"


@needs_bpf
def test_a_resized_terminal_resizes_the_commands_and_signals_it(tmp_path: Path) -> None:
    terminal = Terminal(rows=24, cols=80)
    size = tmp_path / "size"
    proc = record_on(terminal, tmp_path / "w.parquet", python(SLOW_PRINTER, str(size)), quiet=False)
    terminal.wait_for(b"started\n")
    terminal.resize(30, 100)
    proc.send_signal(signal.SIGWINCH)  # what the kernel sends the terminal's foreground group
    terminal.wait_for(b"winch (100, 30)\n")  # the new size, when the signal came
    tell_size(size, 101, 31)
    terminal.resize(31, 101)  # no signal this time: the tee copies it within RESIZE_POLL_S
    assert proc.wait(timeout=60) == 4
    shown = terminal.closed_by_all()
    # The tee drew the live status line, and cleared it before each output: without its draws
    # and clears, what is left is the recorder's notes and the command's output, whole. A draw is
    # never ended by a newline (the next clear or the end follows it); a note right after a clear
    # is a line of its own.
    assert b"\r\x1b[Kuvmtrace: " in shown
    draws = rb"\r\x1b\[K(uvmtrace: [^\r\n]*(?=\r|\Z))?"
    lines = re.sub(draws, b"", shown).splitlines(keepends=True)
    assert lines[-1].startswith(b"uvmtrace: wrote ")
    output = b"".join(line for line in lines if not line.startswith(b"uvmtrace: "))
    output = output.replace(b"winch (100, 30)\n", b"", 1)  # printed between two lines
    assert output == b"started\n" + LINES + b"size (101, 31)\n"


@needs_bpf
def test_ctrl_c_on_the_terminal_still_reaches_the_command(tmp_path: Path) -> None:
    terminal = Terminal(isig=True)
    program = (
        "import sys, time\n"
        "print('started', flush=True)\n"
        "try:\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(42)\n"
    )

    def session_on_terminal() -> None:  # a login shell's session: the terminal is its own
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = record_on(terminal, tmp_path / "c.parquet", python(program), stdin=terminal.slave,
                     start_new_session=True, preexec_fn=session_on_terminal)  # fmt: skip
    terminal.wait_for(b"started\n")
    terminal.type(b"\x03")
    assert proc.wait(timeout=60) == 42
    assert terminal.closed_by_all() == b"started\ninterrupted\n"


@needs_bpf
@pytest.mark.usefixtures("need_docker")
def test_the_docker_client_sees_the_terminal(tmp_path: Path) -> None:
    from tests.dockerimg import busybox_image

    terminal = Terminal(rows=27, cols=91)
    # `-t`: the client gives the container's terminal the size of its own stdout's, which it
    # can only do when that is a terminal (sent once the container runs: hence the sleep).
    proc = subprocess.Popen(
        [*UVMTRACE, "record", "-q", "-o", str(tmp_path / "d.parquet"), "--",
         "docker", "run", "--rm", "-t", busybox_image(), "sh", "-c", "sleep 1; stty size <&1"],
        stdin=subprocess.DEVNULL, stdout=terminal.slave, stderr=terminal.slave,
    )  # fmt: skip
    assert proc.wait(timeout=120) == 0
    assert b"27 91" in terminal.closed_by_all()
