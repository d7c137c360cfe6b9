"""Starting the traced command: held at a gate until the probes know its pid, placed in its own
memory cgroup, run as the user who invoked sudo, its output given to the output tee, and, when
uvmtrace runs in the foreground of a terminal, given that terminal's foreground as a shell would."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import struct
from dataclasses import dataclass
from pathlib import Path

from uvmtrace.recording.errors import UserError


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    user: str
    home: str


def invoking_user() -> RunAs | None:
    """The user behind `sudo`, or None when not started through sudo (or sudo from root)."""
    uid = os.environ.get("SUDO_UID")
    if os.geteuid() != 0 or not uid or int(uid) == 0:
        return None
    try:
        pw = pwd.getpwuid(int(uid))
    except KeyError:
        return RunAs(int(uid), int(os.environ.get("SUDO_GID", uid)), str(uid), "/")
    return RunAs(pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir)


def invoking_owner() -> tuple[int, int] | None:
    """(uid, gid) of the user behind sudo: what we write as root is given to them."""
    who = invoking_user()
    return (who.uid, who.gid) if who else None


def resolve_command(argv: list[str], env: dict[str, str]) -> str:
    """The executable, or a one-line error with exit code 127 (as a shell would)."""
    exe = argv[0]
    if "/" in exe:
        if not os.path.exists(exe):
            raise UserError(f"cannot run {exe}: no such file", exit_code=127)
        if not os.access(exe, os.X_OK) or os.path.isdir(exe):
            raise UserError(f"cannot run {exe}: not executable", exit_code=126)
        return exe
    found = shutil.which(exe, path=env.get("PATH", os.defpath))
    if found is None:
        raise UserError(f"cannot run {exe}: command not found", exit_code=127)
    return found


def foreground_terminal() -> int | None:
    """fd 0 when stdin is a terminal whose foreground process group is ours (we run in the
    foreground, as the command would without us); else None: nothing to hand over."""
    try:
        return 0 if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp() else None
    except OSError:  # not our controlling terminal
        return None


def set_foreground(fd: int, pgid: int) -> bool:
    """Make `pgid` the terminal's foreground group. Called from the background, where the kernel
    would stop the caller with SIGTTOU: ignored meanwhile. False if the terminal is gone."""
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgid)
        return True
    except OSError:
        return False
    finally:
        signal.signal(signal.SIGTTOU, old)


@dataclass
class Launched:
    pid: int
    _gate: int
    _exec_err: int  # CLOEXEC pipe: closed silently by a successful exec, else carries errno+why

    def release(self) -> None:
        """Let the command exec (after its pid is being traced)."""
        os.write(self._gate, b"x")
        os.close(self._gate)


def launch(
    argv: list[str],
    env: dict[str, str],
    *,
    run_as: RunAs | None,
    cgroup_procs: Path | None,
    output: tuple[int, int] | None = None,
    terminal: int | None = None,
) -> Launched:
    """Fork the command, stopped before exec until `release()`; exec errors raise UserError.
    `terminal` (from `foreground_terminal`): the command's group becomes its foreground group
    before exec, so it reads the terminal and sets its modes, and ^C/^Z reach it, as in a shell."""
    exe = resolve_command(argv, env)
    gate_r, gate_w = os.pipe()
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    if run_as is not None:
        env = {**env, "HOME": run_as.home, "USER": run_as.user, "LOGNAME": run_as.user}
    pid = os.fork()
    if pid == 0:  # child: only async-signal-safe-ish work, then exec
        try:
            os.close(gate_w)
            os.close(err_r)
            os.setpgid(0, 0)  # own process group, as a shell's job: see `terminal`
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.read(gate_r, 1)
            os.close(gate_r)
            if terminal is not None:  # here, not in the parent: no exec before it is foreground
                set_foreground(terminal, os.getpid())
            if cgroup_procs is not None:
                with open(cgroup_procs, "w") as f:
                    f.write("0")
            if output is not None:  # the tee's pipes as stdout and stderr
                os.dup2(output[0], 1)
                os.dup2(output[1], 2)
                for fd in set(output) - {1, 2}:
                    os.close(fd)
            if run_as is not None:
                os.initgroups(run_as.user, run_as.gid)
                os.setgid(run_as.gid)
                os.setuid(run_as.uid)
            os.execve(exe, argv, env)
        except BaseException as exc:  # report why exec failed, then die like a shell would
            code = getattr(exc, "errno", 0) or 0
            msg = str(getattr(exc, "strerror", None) or exc).encode()[:400]
            try:
                os.write(err_w, struct.pack("i", code) + msg)
            finally:
                os._exit(127)
    os.close(gate_r)
    os.close(err_w)
    return Launched(pid=pid, _gate=gate_w, _exec_err=err_r)


def exec_error(launched: Launched) -> str | None:
    """After release: None once the command exec'd, else why it could not start."""
    fd = launched._exec_err
    data = os.read(fd, 512)
    os.close(fd)
    if not data:
        return None
    return data[4:].decode(errors="replace")


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)
