"""Run directories and the environment that preloads the shim into a command."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from uvmtrace.recording.errors import UserError

ENV_DIR = "UVMTRACE_SHIM_DIR"


def make_run_dir(parent: Path, other_uids: bool = False) -> Path:
    """Create a fresh run directory for the shim's per-process files under `parent`.

    Default 0700: only our uid (and root) can create files there. With `other_uids` it is
    01733 (like /tmp, but not listable): a container process running as another uid can still
    create its own file, and nobody but the owner can list, rename or delete others' files.
    Names the shim picks are new (O_EXCL) and never followed through symlinks either way;
    the decoder ignores anything that is not a regular file with a valid header.
    """
    path = parent / f"uvmshim-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.mkdir(path, 0o700)
    except OSError as exc:
        raise UserError(f"cannot create the shim run directory {path}: {exc.strerror}") from None
    if other_uids:
        os.chmod(path, 0o1733)  # mkdir's mode is masked by the umask; chmod is not
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise UserError(f"{path} is not a directory owned by us")
    return path


def shim_env(
    run_dir: Path, env: Mapping[str, str] | None = None, lib: Path | None = None
) -> dict[str, str]:
    """`env` (default: ours) plus LD_PRELOAD of the shim and the run directory it writes to."""
    if lib is None:
        from uvmtrace.shim.build import build_shim

        lib = build_shim()
    out = dict(os.environ if env is None else env)
    # The dynamic loader splits LD_PRELOAD on spaces and colons; a path holding them cannot
    # be preloaded at all.
    if any(c in str(lib) for c in " :\t"):
        raise UserError(f"the shim path {lib} contains a space or colon; set XDG_CACHE_HOME")
    previous = out.get("LD_PRELOAD", "").strip()
    out["LD_PRELOAD"] = f"{lib}:{previous}" if previous else str(lib)
    out[ENV_DIR] = str(run_dir)
    return out


def load_problem(
    env: Mapping[str, str], user: tuple[int, int, list[int]] | None = None
) -> str | None:
    """Why a command started with `env` (from `shim_env`) as `user` (uid, gid, groups; None: as
    we are) would run without the shim, or None when it loads and can write its run directory.

    The dynamic loader opens LD_PRELOAD as the command's user and, when it cannot, only prints
    a line on the command's stderr and goes on: so a tiny `sh` with the same environment is
    started the same way, first."""
    import re
    import subprocess

    run_dir = env[ENV_DIR]
    ids: dict = {} if user is None else {"user": user[0], "group": user[1], "extra_groups": user[2]}
    check = 'test -w "$1" && test -x "$1" || echo "cannot write its run directory $1"'
    try:
        r = subprocess.run(
            ["/bin/sh", "-c", check, "sh", run_dir],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=10,
            cwd="/",
            **ids,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"checking it failed: {exc}"
    loader = re.search(r"cannot be preloaded \(([^)]*)\)", r.stderr)
    if loader:
        return f"the dynamic loader cannot open {env['LD_PRELOAD'].split(':')[0]}: {loader[1]}"
    return r.stdout.strip() or None
