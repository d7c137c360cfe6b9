"""The cgroup file system: which hierarchy holds the memory controller (v1, v2 or a hybrid of
both), a process's memory cgroup, cgroup ids <-> paths, memory.* files, and the recorder's own
cgroup for the traced command.

A cgroup's id is its directory's inode number (the kernfs node id), which is what the memcg
tracepoints and cgroup:cgroup_mkdir report.
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
    def name(self) -> str:
        """`memory` (v1) or `unified` (v2), as the recording names the hierarchy."""
        return "memory" if self.version == 1 else "unified"

    @property
    def usage_file(self) -> str:
        return "memory.current" if self.version == 2 else "memory.usage_in_bytes"

    @property
    def limit_file(self) -> str:
        return "memory.max" if self.version == 2 else "memory.limit_in_bytes"

    def path_of(self, given: str | os.PathLike[str]) -> Path:
        """A cgroup given as a path inside the hierarchy (as /proc/PID/cgroup and docker show
        it) or as an absolute path under the mount, normalised; it may not exist, or lie
        outside the hierarchy (see `contains`)."""
        path = Path(given)
        if not (path.is_absolute() and (path == self.mount or self.mount in path.parents)):
            path = self.mount / str(given).lstrip("/")
        return Path(os.path.normpath(path))

    def contains(self, path: Path) -> bool:
        return path == self.mount or self.mount in path.parents

    def lookup(self, given: str | os.PathLike[str]) -> Path | None:
        """The memory cgroup a user named (see `path_of`), or None when there is none."""
        path = self.path_of(given)
        return path if self.contains(path) and (path / "memory.stat").is_file() else None

    def relative(self, path: Path) -> str:
        """`/sys/fs/cgroup/memory/docker/abc` -> `/docker/abc`."""
        return "/" + str(path.relative_to(self.mount)).removeprefix(".")


def v2_mount() -> Path | None:
    """The cgroup v2 tree: /sys/fs/cgroup (v2 only), /sys/fs/cgroup/unified (hybrid), or None."""
    for v2 in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        if (v2 / "cgroup.controllers").exists():
            return v2
    return None


def memory_hierarchy() -> MemoryHierarchy | None:
    """The mount of the memory controller: v1 `memory` or v2 with `memory` in its controllers."""
    v1 = CGROUP_ROOT / "memory"
    if (v1 / "memory.usage_in_bytes").exists():
        return MemoryHierarchy(v1, 1)
    v2 = v2_mount()
    if v2 is not None and "memory" in _read(v2 / "cgroup.controllers").split():
        return MemoryHierarchy(v2, 2)
    return None


def cgroup_version() -> str:
    """`v1`, `v2`, `hybrid` (v1 controllers plus a v2 tree), as systemd calls them, or `none`."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return "v2"
    has_v1 = (CGROUP_ROOT / "memory").is_dir() or (CGROUP_ROOT / "cpu").is_dir()
    if not has_v1:
        return "none"
    return "hybrid" if v2_mount() is not None else "v1"


def _proc_cgroups() -> list[tuple[str, int, bool]]:
    """(controller, hierarchy id, enabled) per line of /proc/cgroups (hierarchy 0: v2)."""
    rows = []
    try:
        with open("/proc/cgroups") as f:
            for line in f:
                fields = line.split()
                if line.startswith("#") or len(fields) < 4:
                    continue
                rows.append((fields[0], int(fields[1]), fields[3] == "1"))
    except OSError:
        pass
    return rows


def hierarchy_names() -> dict[int, str]:
    """Hierarchy id -> name (`memory`, `cpu,cpuacct`, ...; 0 -> `unified`, the v2 hierarchy)."""
    names: dict[int, list[str]] = {}
    for controller, hierarchy, enabled in _proc_cgroups():
        if enabled and hierarchy != 0:
            names.setdefault(hierarchy, []).append(controller)
    out = {h: ",".join(sorted(c)) for h, c in names.items()}
    out[0] = "unified"
    return out


def memory_hierarchy_id() -> int:
    """Hierarchy id of the memory controller (0: cgroup v2), as cgroup:cgroup_mkdir's `root`."""
    return next((h for c, h, _ in _proc_cgroups() if c == "memory"), 0)


def memory_cgroup_of(h: MemoryHierarchy, pid: int | str = "self") -> Path:
    """The memory cgroup directory of `pid` (OSError when there is no such process)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        num, controllers, rel = line.split(":", 2)
        wanted = num == "0" if h.version == 2 else "memory" in controllers.split(",")
        if wanted:
            return h.mount / rel.lstrip("/")
    return h.mount


def memory_cgroup_if_any(h: MemoryHierarchy | None, pid: int) -> Path | None:
    """`memory_cgroup_of`, or None without a memory hierarchy or once the process has gone."""
    if h is None:
        return None
    try:
        return memory_cgroup_of(h, pid)
    except OSError:
        return None


def cgroup_id(path: Path | str) -> int:
    # The memcg tracepoints' id is the cgroup directory's inode number (kernfs node id).
    return os.stat(path).st_ino


def find_cgroup(cgid: int) -> tuple[str, str] | None:
    """(path relative to the memory hierarchy, hierarchy name) of a memory cgroup id."""
    h = memory_hierarchy()
    if h is None:
        return None
    for top, dirs, _files in os.walk(h.mount):
        for d in dirs:
            full = os.path.join(top, d)
            try:
                if os.stat(full).st_ino == cgid:
                    return "/" + os.path.relpath(full, h.mount), h.name
            except OSError:
                continue
    if cgroup_id(h.mount) == cgid:
        return "/", h.name
    return None


def ancestors(rel: str) -> list[str]:
    """`/docker/abc` -> [`/docker`, `/`]."""
    parts = [p for p in rel.split("/") if p]
    return ["/" + "/".join(parts[:i]) if i else "/" for i in range(len(parts) - 1, -1, -1)]


def ancestor_ids(rel: str) -> dict[int, str]:
    """{cgroup id: path} of the memory cgroups above `rel`, its parent first, the root last."""
    h = memory_hierarchy()
    out: dict[int, str] = {}
    if h is None:
        return out
    for anc in ancestors(rel):
        try:
            out.setdefault(cgroup_id(h.path_of(anc)), anc)
        except OSError:
            continue
    return out


def procs(path: Path) -> list[int]:
    """The processes directly in cgroup `path` ([] when it is gone)."""
    try:
        return [int(x) for x in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def members(path: Path) -> list[int]:
    """The processes of cgroup `path` and of its descendants."""
    out: list[int] = []
    for sub in [path, *(p.parent for p in path.glob("**/cgroup.procs"))]:
        out += procs(sub)
    return sorted(set(out))


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
    """A memory.stat file as {key: value} ({} when unreadable)."""
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
    parent = memory_cgroup_of(h)
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
        pids = procs(path)
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


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
