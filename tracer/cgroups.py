"""Finding memory cgroups (v1 and v2), reading their files, and making one for the traced command.

The command gets its own memory cgroup (a child of ours) so that what it is charged is separable
from everything else on the host and reconcilable against that cgroup's `memory.stat`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryHierarchy:
    mount: Path  # where the hierarchy holding the memory controller is mounted
    version: int  # 1 or 2

    @property
    def usage_file(self) -> str:
        return "memory.current" if self.version == 2 else "memory.usage_in_bytes"

    @property
    def limit_file(self) -> str:
        return "memory.max" if self.version == 2 else "memory.limit_in_bytes"


def memory_hierarchy() -> MemoryHierarchy | None:
    """The mount of the memory controller: v1 `memory` or v2 with `memory` in its controllers."""
    v1 = CGROUP_ROOT / "memory"
    if (v1 / "memory.usage_in_bytes").exists():
        return MemoryHierarchy(v1, 1)
    for v2 in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        controllers = v2 / "cgroup.controllers"
        if controllers.exists() and "memory" in controllers.read_text().split():
            return MemoryHierarchy(v2, 2)
    return None


def cgroup_version() -> str:
    """`v1`, `v2` or `hybrid` (v1 controllers plus a v2 tree), as systemd calls them."""
    has_v1 = (CGROUP_ROOT / "memory").is_dir() or (CGROUP_ROOT / "cpu").is_dir()
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return "v2"
    return "hybrid" if has_v1 and (CGROUP_ROOT / "unified").is_dir() else "v1" if has_v1 else "none"


def own_memory_cgroup(h: MemoryHierarchy, pid: int | str = "self") -> Path:
    """The memory cgroup directory of `pid`."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        num, controllers, rel = line.split(":", 2)
        wanted = num == "0" if h.version == 2 else "memory" in controllers.split(",")
        if wanted:
            return h.mount / rel.lstrip("/")
    return h.mount


def cgroup_id(path: Path) -> int:
    # The memcg tracepoints' id is the cgroup directory's inode number (kernfs node id).
    return os.stat(path).st_ino


def read_int(path: Path) -> int | None:
    """A memory.* number, None for "max" / v1's huge "no limit" value / an unreadable file."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    value = int(text)
    return None if value >= (1 << 62) else value


def read_stat(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def make_run_cgroup(h: MemoryHierarchy, name: str) -> Path:
    """A memory cgroup for the traced command: a child of ours, or on v2, where ours holds
    processes and so cannot delegate the controller ("no internal processes"), a sibling."""
    parent = own_memory_cgroup(h)
    if h.version == 2:
        ctl = parent / "cgroup.subtree_control"
        if "memory" not in ctl.read_text().split():
            try:
                ctl.write_text("+memory")
            except OSError:
                if parent == h.mount:
                    raise
                parent = parent.parent
                ctl = parent / "cgroup.subtree_control"
                if "memory" not in ctl.read_text().split():
                    ctl.write_text("+memory")
    path = parent / name
    path.mkdir(mode=0o755)
    return path


def empty_into(path: Path, dest: Path) -> list[int]:
    """Move every process of cgroup `path` to `dest`; returns the pids moved."""
    moved = []
    for _ in range(3):  # a process may fork while we move its parent
        try:
            pids = [int(x) for x in (path / "cgroup.procs").read_text().split()]
        except OSError:
            return moved
        if not pids:
            break
        for pid in pids:
            try:
                (dest / "cgroup.procs").write_text(str(pid))
                moved.append(pid)
            except OSError:
                pass  # gone meanwhile
    return moved


def remove_cgroup(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except OSError:
        return False
