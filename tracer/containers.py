"""`docker run` / `podman run` as the traced command: find its container and preload the shim in it.

The container is not a child of the `docker` client, so its processes are found through the
cgroup the runtime creates (the probes see `cgroup_mkdir`) and through a `--cidfile` we add.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

RUNTIMES = ("docker", "podman")
SHIM_IN_CONTAINER = "/.uvmtrace/libuvmshim.so"
RUN_DIR_IN_CONTAINER = "/.uvmtrace/run"

# Global options of the docker/podman CLI that take a value (so `run` is found after them).
_GLOBAL_WITH_VALUE = {
    "--config",
    "-c",
    "--context",
    "-H",
    "--host",
    "-l",
    "--log-level",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
    "--root",
    "--runroot",
    "--url",
    "--connection",
}


@dataclass
class ContainerRun:
    runtime: str
    run_index: int  # position of "run" in argv
    cidfile: Path
    user_cidfile: bool
    container_id: str | None = None
    name: str | None = None
    host_pid: int | None = None
    extra: dict = field(default_factory=dict)


def detect(argv: list[str]) -> tuple[str, int] | None:
    """(runtime, index of `run`) when argv is `docker [global opts] run ...`."""
    if not argv:
        return None
    runtime = os.path.basename(argv[0])
    if runtime not in RUNTIMES:
        return None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "run":
            return runtime, i
        if arg in ("container",) and i + 1 < len(argv) and argv[i + 1] == "run":
            return runtime, i + 1
        if not arg.startswith("-"):
            return None
        i += 2 if arg in _GLOBAL_WITH_VALUE else 1
    return None


def _user_cidfile(argv: list[str], start: int) -> str | None:
    for i in range(start, len(argv)):
        arg = argv[i]
        if arg == "--":
            break
        if arg == "--cidfile" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--cidfile="):
            return arg.split("=", 1)[1]
    return None


def rewrite(
    argv: list[str],
    run_dir: Path,
    *,
    shim_lib: Path | None,
    shim_run_dir: Path | None,
) -> tuple[list[str], ContainerRun] | None:
    """Insert a --cidfile and, with a shim, its bind mounts and LD_PRELOAD after `run`."""
    found = detect(argv)
    if found is None:
        return None
    runtime, idx = found
    given = _user_cidfile(argv, idx + 1)
    cidfile = Path(given) if given else run_dir / "container.cid"
    extra: list[str] = [] if given else ["--cidfile", str(cidfile)]
    if shim_lib is not None and shim_run_dir is not None:
        extra += [
            "-v", f"{shim_lib}:{SHIM_IN_CONTAINER}:ro",
            "-v", f"{shim_run_dir}:{RUN_DIR_IN_CONTAINER}",
            "-e", f"LD_PRELOAD={SHIM_IN_CONTAINER}",
            "-e", f"UVMTRACE_SHIM_DIR={RUN_DIR_IN_CONTAINER}",
        ]  # fmt: skip
    new = argv[: idx + 1] + extra + argv[idx + 1 :]
    return new, ContainerRun(runtime, idx, cidfile, bool(given))


def resolve(run: ContainerRun) -> bool:
    """Fill id, name and the container's init pid once the runtime has written the cidfile."""
    if run.container_id is None:
        try:
            cid = run.cidfile.read_text().strip()
        except OSError:
            return False
        if not cid:
            return False
        run.container_id = cid
    if run.host_pid:
        return True
    r = subprocess.run(
        [run.runtime, "inspect", run.container_id],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if r.returncode != 0:
        return False
    try:
        info = json.loads(r.stdout)[0]
    except (ValueError, IndexError):
        return False
    run.name = (info.get("Name") or "").lstrip("/") or None
    pid = (info.get("State") or {}).get("Pid") or None
    run.host_pid = pid
    run.extra = {
        "image": (info.get("Config") or {}).get("Image"),
        "memory_limit": (info.get("HostConfig") or {}).get("Memory") or None,
    }
    return bool(pid)
