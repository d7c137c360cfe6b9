"""A sweep plan (TOML): the command, the repeats, the variants, what happens between runs.

```toml
command = ["python3", "serve.py"]     # argv; {python}, {plan_dir}, {out} are substituted
repeats = 3
between = "drop-caches"               # or "keep-warm": leave the page cache as the last run left it
setup = ["sh", "build-image.sh"]      # optional, once before the first run (again on --resume)
prepare = ["sh", "before-each.sh"]    # optional, before every run (not recorded)
record = ["--interval", "0.2"]        # optional `uvmtrace record` options for every run

[[variants]]                          # the first variant is the baseline
name = "native"
warm = ["/models/x.bin"]              # files read into the page cache before each run

[[variants]]
name = "docker-ipc-host"
runtime = "docker"                    # native (default), docker, podman, chroot
image = "my-image"
flags = ["--ipc=host"]                # `docker run` / `podman run` options
memory = "8G"                         # a cgroup limit: --memory, or `record --memory-limit`
env = { CUDA_VISIBLE_DEVICES = "0" }
command = ["python3", "/srv/serve.py"]   # this variant's own argv (default: the plan's)
record = ["--no-shim"]                # more `record` options for this variant
```
A chroot variant names `root = "DIR"`. This module only reads and checks a plan and turns a
variant into the argv `record` runs; running the sweep is sweep/run.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from uvmtrace.recording.errors import UserError

RUNTIMES = ("native", "docker", "podman", "chroot")
BETWEEN = ("drop-caches", "keep-warm")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PLAN_KEYS = {"command", "repeats", "between", "setup", "prepare", "record", "variants"}
_VARIANT_KEYS = {"name", "runtime", "image", "flags", "memory", "env", "command", "record",
                 "root", "warm"}  # fmt: skip


@dataclass(frozen=True)
class Variant:
    name: str
    runtime: str = "native"
    command: list[str] = field(default_factory=list)
    image: str | None = None
    flags: list[str] = field(default_factory=list)
    memory: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    root: str | None = None
    warm: list[str] = field(default_factory=list)
    record: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    variants: list[Variant]
    repeats: int
    between: str
    setup: list[str]
    prepare: list[str]
    record: list[str]

    def as_dict(self) -> dict[str, Any]:
        """The resolved plan, as stored in the sweep directory (to check a --resume)."""
        return {
            "repeats": self.repeats,
            "between": self.between,
            "setup": self.setup,
            "prepare": self.prepare,
            "record": self.record,
            "variants": [vars(v) for v in self.variants],
        }


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, (str, int, float)) for x in value):
        raise UserError(f"{where} must be a list of strings (an argv), not {value!r}")
    return [str(x) for x in value]


def _fill(args: list[str], subst: dict[str, str]) -> list[str]:
    out = []
    for a in args:
        for key, value in subst.items():
            a = a.replace("{" + key + "}", value)
        out.append(a)
    return out


def load_plan(path: Path, out: Path) -> Plan:
    """Read and check a plan; placeholders are filled ({python}: this Python, {plan_dir}: the
    plan's directory, {out}: the sweep's output directory, both absolute)."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read plan {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    where = str(path)
    unknown = set(raw) - _PLAN_KEYS
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    subst = {
        "python": sys.executable,
        "plan_dir": str(path.resolve().parent),
        "out": str(out.absolute()),
    }
    command = _fill(_strings(raw.get("command", []), f"{where}: command"), subst)
    repeats = raw.get("repeats", 3)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or not 1 <= repeats <= 1000:
        raise UserError(f"{where}: repeats must be a whole number from 1 to 1000")
    between = raw.get("between", "drop-caches")
    if between not in BETWEEN:
        raise UserError(f"{where}: between must be one of {', '.join(BETWEEN)}, not {between!r}")
    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, list) or not variants_raw:
        raise UserError(f"{where}: the plan needs at least one [[variants]] table")
    variants = [_variant(v, i, command, subst, where) for i, v in enumerate(variants_raw)]
    names = [v.name for v in variants]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{where}: variant names must differ ({', '.join(dupes)} repeated)")
    return Plan(
        variants=variants,
        repeats=repeats,
        between=between,
        setup=_fill(_strings(raw.get("setup", []), f"{where}: setup"), subst),
        prepare=_fill(_strings(raw.get("prepare", []), f"{where}: prepare"), subst),
        record=_strings(raw.get("record", []), f"{where}: record"),
    )


def _variant(v: Any, i: int, command: list[str], subst: dict[str, str], where: str) -> Variant:
    if not isinstance(v, dict):
        raise UserError(f"{where}: variants[{i}] must be a table")
    name = v.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(
            f"{where}: variants[{i}] needs a name of letters, digits, '.', '_' or '-' "
            f"(it becomes a directory name), not {name!r}"
        )
    at = f"{where}: variant {name}"
    unknown = set(v) - _VARIANT_KEYS
    if unknown:
        raise UserError(f"{at}: unknown key(s) {', '.join(sorted(unknown))}")
    runtime = v.get("runtime", "native")
    if runtime not in RUNTIMES:
        raise UserError(f"{at}: runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    own = _fill(_strings(v["command"], f"{at}: command"), subst) if "command" in v else command
    if not own:
        raise UserError(f"{at}: no command (give `command` in the plan or in the variant)")
    env = v.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
        raise UserError(f'{at}: env must be a table of NAME = "value"')
    image = v.get("image")
    root = v.get("root")
    if runtime in ("docker", "podman") and not isinstance(image, str):
        raise UserError(f'{at}: a {runtime} variant needs image = "..."')
    if runtime == "chroot" and not isinstance(root, str):
        raise UserError(f'{at}: a chroot variant needs root = "DIR"')
    if runtime not in ("docker", "podman") and (image or v.get("flags")):
        raise UserError(f"{at}: image and flags are for docker or podman variants")
    memory = v.get("memory")
    if memory is not None and not isinstance(memory, (str, int)):
        raise UserError(f'{at}: memory must be a size such as "8G"')
    return Variant(
        name=name,
        runtime=runtime,
        command=own,
        image=image,
        flags=_fill(_strings(v.get("flags", []), f"{at}: flags"), subst),
        memory=str(memory) if memory is not None else None,
        env={k: str(x) for k, x in env.items()},
        root=_fill([root], subst)[0] if isinstance(root, str) else None,
        warm=_fill(_strings(v.get("warm", []), f"{at}: warm"), subst),
        record=_strings(v.get("record", []), f"{at}: record"),
    )


# ---- what a variant needs, and the argv it runs ---------------------------------------------


def _runtime_answers(tool: str) -> str | None:
    if shutil.which(tool) is None:
        return f"no {tool} command on this host"
    try:
        r = subprocess.run([tool, "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return f"`{tool} info` timed out"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return f"`{tool} info` failed: {last[:160]}"
    return None


def _image_present(tool: str, image: str) -> str | None:
    r = subprocess.run([tool, "image", "inspect", image], capture_output=True, timeout=30)
    return None if r.returncode == 0 else f"image {image} not found by {tool}"


def why_unavailable(v: Variant) -> str | None:
    """None when this host can run the variant, else why not (one line): the variant is then
    skipped, not fatal."""
    if v.runtime in ("docker", "podman"):
        assert v.image is not None
        return _runtime_answers(v.runtime) or _image_present(v.runtime, v.image)
    if v.runtime == "chroot":
        assert v.root is not None
        if shutil.which("chroot") is None:
            return "no chroot command on this host"
        if os.geteuid() != 0:
            return "chroot needs root"
        if not Path(v.root).is_dir():
            return f"root {v.root} is not a directory"
    return None


def container_name(variant: str, run: int) -> str:
    return f"uvmtrace-sweep-{variant}-{run}-{os.getpid()}"


def run_argv(v: Variant, run: int) -> tuple[list[str], list[str], dict[str, str]]:
    """(extra `record` options, the command record runs, environment additions) for one run."""
    record = list(v.record)
    env: dict[str, str] = {}
    if v.runtime in ("docker", "podman"):
        argv = [v.runtime, "run", "--rm", "--name", container_name(v.name, run)]
        if v.memory:
            argv += ["--memory", v.memory]
        for key, value in v.env.items():
            argv += ["-e", f"{key}={value}"]
        assert v.image is not None
        # the CLI only talks to the daemon; it needs the socket, which root has
        return ["--as-root", *record], [*argv, *v.flags, v.image, *v.command], env
    env.update(v.env)
    if v.memory:
        record += ["--memory-limit", v.memory]
    if v.runtime == "chroot":
        assert v.root is not None
        argv = ["chroot"]
        uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
        if uid and gid and "--as-root" not in record:
            argv.append(f"--userspec={uid}:{gid}")  # chroot needs root; the command does not
        return ["--as-root", *record], [*argv, v.root, *v.command], env
    return record, list(v.command), env
