"""File creation that is safe when uvmtrace runs as root (no symlink following, owner-only)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from uvmtrace.recording.errors import UserError


def make_private_dir(path: Path) -> Path:
    """Create `path` (mode 0700); an existing entry must be a real directory we own."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise UserError(
                f"{path} exists and is not a directory owned by us; remove it"
            ) from None
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror}") from None
    return path


def create_private_file(path: Path, mode: int = 0o600) -> int:
    """Create a new file exclusively, never through a symlink; returns the fd."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        raise UserError(f"cannot create {path}: {exc.strerror}") from None


def check_writable_target(path: Path) -> None:
    """Fail early, in one line, when the output cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a file name with -o")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: directory {parent} is not writable")
    if path.is_symlink():
        raise UserError(f"refusing to write {path}: it is a symlink")


def give_to(path: Path, owner: tuple[int, int] | None) -> None:
    """Hand a file we created as root to the user who ran sudo."""
    if owner is not None and os.geteuid() == 0:
        os.chown(path, owner[0], owner[1], follow_symlinks=False)
