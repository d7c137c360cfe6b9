"""What an earlier recording left behind, cleaned up before a new one starts and reported.

A recorder killed with SIGKILL (or a host that lost power) cannot clean up: its spool, its
unfinished `.NAME.PID.partial`, its work directory `.NAME.uvmtrace/` and its `uvmtrace-PID`
memory cgroup stay. The next `record` to the same -o keeps the spool under a new number (for
`uvmtrace recover`) and removes the rest; any `record` removes cgroups of dead recorders.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from uvmtrace.host import cgroupfs
from uvmtrace.recording.errors import UserError
from uvmtrace.recording.writer import RecordingWriter

_PARTIAL = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.partial")


def recorder_alive(pid: int) -> bool:
    """Whether `pid` is a running uvmtrace (not a recycled pid of something else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"uvmtrace" in cmdline


def prepare_output(output: Path, *, force: bool) -> list[str]:
    """Make `output` ready for a new recording; returns one line per thing done about the past."""
    notes: list[str] = []
    directory = output.parent if str(output.parent) else Path(".")
    partials = []
    for entry in os.scandir(directory):
        m = _PARTIAL.fullmatch(entry.name)
        if m and m["name"] == output.name:
            pid = int(m["pid"])
            if pid != os.getpid() and recorder_alive(pid):
                raise UserError(f"{output} is being recorded right now by uvmtrace (pid {pid})")
            partials.append(Path(entry.path))
    if output.exists() and not force:
        raise UserError(f"{output} exists; use --force to overwrite it, or choose another -o")
    for partial in partials:
        partial.unlink(missing_ok=True)
        notes.append(f"removed {partial.name}, the unfinished file of a killed recording")
    spool = RecordingWriter.spool_path(output)
    if spool.exists() or spool.is_symlink():
        kept = _free_name(spool)
        os.rename(spool, kept)
        notes.append(
            f"an earlier recording to {output} did not finish; its spool is now {kept} "
            f"(`uvmtrace recover {kept} -o FILE` turns it into a recording)"
        )
    work = output.with_name(f".{output.name}.uvmtrace")
    if work.is_dir() and not work.is_symlink():
        shutil.rmtree(work, ignore_errors=True)
    return notes


def _free_name(spool: Path) -> Path:
    n = 1
    while (candidate := spool.with_name(f"{spool.name}.{n}")).exists() or candidate.is_symlink():
        n += 1
    return candidate


def clear_stale_cgroups(h: cgroupfs.MemoryHierarchy) -> list[str]:
    """Remove the `uvmtrace-PID` cgroups of recorders that are gone; processes still in one
    (a command that outlived its recorder) move to our own cgroup first."""
    notes = []
    own = cgroupfs.memory_cgroup_of(h)
    for parent in {own, own.parent}:
        try:
            entries = list(parent.glob("uvmtrace-*"))
        except OSError:
            continue
        for path in entries:
            pid = path.name.removeprefix("uvmtrace-")
            if not pid.isdigit() or int(pid) == os.getpid() or recorder_alive(int(pid)):
                continue
            moved = cgroupfs.empty_into(path, own)
            if cgroupfs.remove_cgroup(path):
                what = f"removed the memory cgroup {path.name} of a killed recording"
                notes.append(what + (f" (moved its processes {moved} out)" if moved else ""))
    return notes
