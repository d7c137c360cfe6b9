"""Checks of user-space tools: the C compiler the shim is built with, container engines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from uvmtrace.doctor.result import Check, missing, needs_root, ok
from uvmtrace.recording.errors import UserError
from uvmtrace.shim.build import CFLAGS, find_compiler

ENGINE_TIMEOUT_S = 15


def check_c_compiler() -> Check:
    name = "C compiler"
    try:
        cc = find_compiler()  # the one the shim is built with
    except UserError:
        return missing(
            name, "no cc/gcc/clang: the CUDA shim cannot be built", "apt-get install gcc"
        )
    # Build a tiny shared object the way the shim is built: that is what must work.
    with tempfile.TemporaryDirectory(prefix="uvmtrace-doctor-") as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("int uvmtrace_doctor(void) { return 0; }\n")
        try:
            proc = subprocess.run(
                [cc, *CFLAGS, "-o", str(Path(tmp) / "t.so"), str(src)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return missing(name, f"{cc} failed to run: {exc}", "apt-get install gcc")
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return missing(name, f"{cc} cannot build a shared library: {tail}", "apt-get install gcc")
    version = _first_line([cc, "--version"])
    return ok(name, f"{shutil.which(cc)}: {version}")


def check_docker() -> Check:
    name = "Docker"
    if shutil.which("docker") is None:
        return missing(
            name,
            "no docker client (needed only to trace containers)",
            "apt-get install docker.io (or: sudo scripts/setup-host --docker)",
        )
    info, err = _engine_info("docker")
    if info is None and "permission denied" in err and os.geteuid() != 0:
        return needs_root(name, "the Docker daemon's socket (root or the docker group)")
    if info is None:
        return missing(
            name,
            f"daemon not reachable: {err}",
            "systemctl start docker, or dockerd --iptables=false --bridge=none & "
            "(or: sudo scripts/setup-host --docker)",
        )
    return ok(
        name,
        f"daemon {info.get('ServerVersion', '?')}, cgroup v{info.get('CgroupVersion', '?')} "
        f"with the {info.get('CgroupDriver', '?')} driver",
    )


def check_podman() -> Check | None:
    """Reported only where podman is installed: it is an alternative, not a requirement."""
    if shutil.which("podman") is None:
        return None
    info, err = _engine_info("podman")
    if info is None:
        return missing("Podman", f"podman info failed: {err}", "see `podman info`")
    host = info.get("host", {})
    version = info.get("version", {}).get("Version", "?")
    return ok("Podman", f"podman {version}, cgroup {host.get('cgroupVersion', '?')}")


def _engine_info(engine: str) -> tuple[dict | None, str]:
    try:
        proc = subprocess.run(
            [engine, "info", "--format", "{{json .}}"],
            capture_output=True,
            text=True,
            timeout=ENGINE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return None, f"`{engine} info` did not answer in {ENGINE_TIMEOUT_S} s"
    except OSError as exc:
        return None, str(exc)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return None, lines[-1] if lines else f"exit code {proc.returncode}"
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return None, "unreadable output from `info`"
    # docker info exits 0 with ServerErrors when only the client works.
    errors = info.get("ServerErrors") if isinstance(info, dict) else None
    if errors:
        return None, str(errors[0])
    return info, ""


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"
