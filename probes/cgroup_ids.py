"""cgroup ids (directory inode numbers, what the memcg tracepoints report) and their paths."""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"


def hierarchy_names() -> dict[int, str]:
    """Hierarchy id -> name (`memory`, `cpu,cpuacct`, ...; 0 -> `unified`, the v2 hierarchy)."""
    names: dict[int, list[str]] = {}
    try:
        with open("/proc/cgroups") as f:
            for line in f:
                if line.startswith("#"):
                    continue
                fields = line.split()
                if len(fields) >= 4 and fields[3] == "1" and fields[1] != "0":
                    names.setdefault(int(fields[1]), []).append(fields[0])
    except OSError:
        pass
    out = {h: ",".join(sorted(c)) for h, c in names.items()}
    out[0] = "unified"
    return out


def memory_mount() -> tuple[str, str]:
    """(mount point of the memory controller's hierarchy, `memory` (v1) or `unified` (v2))."""
    v1 = os.path.join(CGROUP_ROOT, "memory")
    if os.path.isfile(os.path.join(v1, "memory.usage_in_bytes")):
        return v1, "memory"
    unified = os.path.join(CGROUP_ROOT, "unified")
    if os.path.isfile(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return CGROUP_ROOT, "unified"
    return unified, "unified"


def cgroup_id(path: str) -> int:
    return os.stat(path).st_ino


def memory_cgroup_of(pid: int) -> tuple[int, str]:
    """(cgroup id, path relative to the hierarchy) of a process's memory cgroup."""
    mount, kind = memory_mount()
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _hid, controllers, rel = line.rstrip("\n").split(":", 2)
            if (kind == "memory" and "memory" in controllers.split(",")) or (
                kind == "unified" and controllers == ""
            ):
                return cgroup_id(mount + rel), rel
    raise LookupError(f"pid {pid} has no memory cgroup")


def find_cgroup(cgid: int) -> tuple[str, str] | None:
    """(path relative to its hierarchy, hierarchy name) of a memory cgroup id, by walking it."""
    mount, kind = memory_mount()
    for top, dirs, _files in os.walk(mount):
        for d in dirs:
            full = os.path.join(top, d)
            try:
                if os.stat(full).st_ino == cgid:
                    return "/" + os.path.relpath(full, mount), kind
            except OSError:
                continue
    if cgroup_id(mount) == cgid:
        return "/", kind
    return None


def ancestors(rel: str) -> list[str]:
    """`/docker/abc` -> [`/docker`, `/`]."""
    parts = [p for p in rel.split("/") if p]
    return ["/" + "/".join(parts[:i]) if i else "/" for i in range(len(parts) - 1, -1, -1)]
