"""`docker run` / `podman run` as the traced command: find its container and preload the shim in it.

The container is not a child of the `docker` client, so its processes are found through the
cgroup the runtime creates (the probes see `cgroup_mkdir`) and through a `--cidfile` we add.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from uvmtrace.recording.errors import UserError
from uvmtrace.shim.reclaim_requests import env_items

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
    detached: bool = False  # `run -d`: followed until the container exits
    exit_code: int | None = None  # the container's, once a detached one has exited


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


def bind_mount(runtime: str, source: Path, target: str, *, readonly: bool = False) -> list[str]:
    """`--mount` of an absolute host path: unlike `-v SRC:DST`, a relative path, a space or a
    `:` in it cannot be taken for a volume name or a mode. Docker reads the value as CSV, so a
    field holding `,` or `"` is quoted; Podman splits on `,` and has no quoting."""
    src = str(source.absolute())
    if runtime == "podman" and "," in src:
        raise UserError(f"podman cannot bind-mount a path holding ',': {src}; choose another -o")
    fields = ["type=bind", f"source={src}", f"target={target}"]
    if readonly:
        fields.append("readonly")
    return ["--mount", ",".join(_csv_field(f) for f in fields)]


def _csv_field(field: str) -> str:
    if "," not in field and '"' not in field:
        return field
    return '"' + field.replace('"', '""') + '"'


def rewrite(
    argv: list[str],
    run_dir: Path,
    *,
    shim_lib: Path | None,
    shim_run_dir: Path | None,
    shim_env: dict[str, str] | None = None,
) -> tuple[list[str], ContainerRun] | None:
    """Insert a --cidfile and, with a shim, its bind mounts and LD_PRELOAD after `run`."""
    found = detect(argv)
    if found is None:
        return None
    runtime, idx = found
    given = _user_cidfile(argv, idx + 1)
    cidfile = Path(given) if given else run_dir.absolute() / "container.cid"
    extra: list[str] = [] if given else ["--cidfile", str(cidfile)]
    if shim_lib is not None and shim_run_dir is not None:
        extra += [
            *bind_mount(runtime, shim_lib, SHIM_IN_CONTAINER, readonly=True),
            *bind_mount(runtime, shim_run_dir, RUN_DIR_IN_CONTAINER),
            "-e", f"LD_PRELOAD={SHIM_IN_CONTAINER}",
            "-e", f"UVMTRACE_SHIM_DIR={RUN_DIR_IN_CONTAINER}",
        ]  # fmt: skip
        for key, value in env_items(shim_env or {}).items():  # --reclaim-before-sizing
            extra += ["-e", f"{key}={value}"]
    new = argv[: idx + 1] + extra + argv[idx + 1 :]
    return new, ContainerRun(runtime, idx, cidfile, bool(given), detached=detached(argv, idx))


def read_cidfile(path: Path) -> str | None:
    """The id the runtime wrote there, once it is whole. The file lies in a directory of the
    command's user (or where they chose): read as root, never through a symlink, and only what
    has the form of an id (64 hex digits, Docker and Podman alike)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        text = f.read(256).decode(errors="replace").strip()
    return text if re.fullmatch(r"[0-9a-f]{64}", text) else None


def resolve(run: ContainerRun) -> bool:
    """Fill id, name and the container's init pid once the runtime has written the cidfile."""
    if run.container_id is None:
        cid = read_cidfile(run.cidfile)
        if cid is None:
            return False
        run.container_id = cid
    if run.host_pid:
        return True
    info = inspect(run.runtime, run.container_id)
    if info is None:
        return False
    run.name, run.host_pid, run.extra = describe(info)
    return bool(run.host_pid)


def wait(run: ContainerRun) -> subprocess.Popen[str]:
    """`<runtime> wait ID`: ends when the container has exited, printing its exit code."""
    return subprocess.Popen(
        [run.runtime, "wait", str(run.container_id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def signal_container(run: ContainerRun, signame: str) -> None:
    """Pass a signal to a detached container, as a foreground `run` passes it (sig-proxy)."""
    subprocess.Popen(
        [run.runtime, "kill", "--signal", signame, str(run.container_id)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def inspect(runtime: str, ref: str) -> dict | None:
    """`<runtime> inspect REF` (a name or an id), None when the runtime does not know it."""
    try:
        r = subprocess.run(
            [runtime, "inspect", "--type", "container", ref],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    try:
        info = json.loads(r.stdout)[0]
    except (ValueError, IndexError):
        return None
    return info if isinstance(info, dict) else None


def describe(info: dict) -> tuple[str | None, int | None, dict]:
    """(name, host pid of its init process or None when not running, image and memory limit)
    from an `inspect` answer; Docker and Podman share these fields."""
    name = (info.get("Name") or "").lstrip("/") or None
    pid = (info.get("State") or {}).get("Pid") or None
    extra = {
        "image": (info.get("Config") or {}).get("Image"),
        "memory_limit": (info.get("HostConfig") or {}).get("Memory") or None,
    }
    return name, pid, extra


@dataclass(frozen=True)
class RunningContainer:
    runtime: str
    id: str | None
    name: str | None
    pid: int  # host pid of its init process
    extra: dict  # image and memory limit (describe)


def find_running(ref: str) -> RunningContainer:
    """The running container `ref` (a name or an id) of docker or podman, whichever knows it;
    a one-line UserError when neither is installed, none knows it, or it is not running."""
    runtimes = [r for r in RUNTIMES if shutil.which(r)]
    if not runtimes:
        raise UserError(f"cannot look up container {ref}: neither docker nor podman is installed")
    for runtime in runtimes:
        info = inspect(runtime, ref)
        if info is None:
            continue
        name, pid, extra = describe(info)
        if not pid:
            raise UserError(f"container {name or ref} is not running")
        return RunningContainer(runtime, info.get("Id"), name, int(pid), extra)
    raise UserError(f"no container {ref} ({' or '.join(runtimes)} knows none by that name or id)")


# `docker run` / `podman run` options that take no value (all others take one, unless `=`).
_RUN_FLAGS = {
    "-d", "--detach", "-i", "--interactive", "-t", "--tty", "--rm", "--privileged", "--init",
    "-P", "--publish-all", "--read-only", "--no-healthcheck", "--oom-kill-disable",
    "--disable-content-trust", "-q", "--quiet", "--sig-proxy", "--help", "--replace",
    "--rmi", "--tls-verify", "--http-proxy", "--no-hosts", "--env-host", "--use-cgroupns",
}  # fmt: skip
_SHORT_WITH_VALUE = set("eplvuwhmac")


def _run_options(argv: list[str], run_index: int) -> tuple[list[str], int]:
    """(the options of a `docker run` argv, each with its value, the index of the image)."""
    options = []
    i = run_index + 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return options, i + 1
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, _value = arg.partition("=")
        takes = not eq and name not in _RUN_FLAGS
        if not name.startswith("--") and len(name) > 2:  # -it, -dit; -eFOO (value attached)
            takes = name[1] not in _SHORT_WITH_VALUE and name[-1] in _SHORT_WITH_VALUE
        options.append(arg if not takes else f"{arg}={argv[i + 1] if i + 1 < len(argv) else ''}")
        i += 2 if takes else 1
    return options, i


def image_and_command(argv: list[str], run_index: int) -> tuple[str, list[str], str | None]:
    """(image, command after it, --entrypoint) of a `docker run` argv."""
    options, i = _run_options(argv, run_index)
    entrypoint = next(
        (o.partition("=")[2] for o in options if o.partition("=")[0] == "--entrypoint"), None
    )
    if i >= len(argv):
        return "", [], entrypoint
    return argv[i], argv[i + 1 :], entrypoint


def detached(argv: list[str], run_index: int) -> bool:
    """Whether `docker run`/`podman run` starts the container in the background (-d, -dit,
    --detach, --detach=true): the client then returns at once while the container runs on."""
    for opt in _run_options(argv, run_index)[0]:
        name, eq, value = opt.partition("=")
        if name == "--detach" or (name == "-d" and not eq):
            return not eq or value.lower() in ("true", "1")
        cluster = not name.startswith("--") and len(name) > 2 and not eq
        if cluster and name[1] not in _SHORT_WITH_VALUE and "d" in name[1:]:  # -dit, -itd
            return True
    return False


def program_interpreter(runtime: str, argv: list[str], run_index: int) -> tuple[str, str | None]:
    """(the program the container starts, its ELF interpreter: '' static, None unknown),
    read from the image's files (overlay2 layers) before the container exists."""
    from uvmtrace.shim.target import RootFs

    image, cmd, entrypoint = image_and_command(argv, run_index)
    if not image:
        return "", None
    try:
        r = subprocess.run(
            [runtime, "image", "inspect", image], capture_output=True, text=True, timeout=30
        )
        info = json.loads(r.stdout)[0] if r.returncode == 0 else {}
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        info = {}
    config = info.get("Config") or {}
    entry = [entrypoint] if entrypoint is not None else list(config.get("Entrypoint") or [])
    program = (entry or cmd or list(config.get("Cmd") or []) or [""])[0]
    data = (info.get("GraphDriver") or {}).get("Data") or {}
    layers = [data.get("UpperDir"), *(data.get("LowerDir") or "").split(":")]
    layers = [Path(p) for p in layers if p]
    if not program or not layers:
        return program, None
    env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
    path_var = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    return program, RootFs(layers).program_interpreter(program, path_var)
