"""Files behind mappings and page-cache pages, resolved in user space from /proc/PID/maps and
/proc/PID/fd while the process still has them (best effort: a closed, unmapped file stays null)."""

from __future__ import annotations

import os

import numpy as np

MAP_ANONYMOUS = 0x20


class PathResolver:
    def __init__(self) -> None:
        self._files: dict[tuple[int, int], str] = {}  # (st_dev, inode) -> path
        self._maps: dict[int, list[tuple[int, int, int, int, str]]] = {}

    def forget_maps(self) -> None:
        """Mappings change; parse them again on the next drain."""
        self._maps.clear()

    def _read_maps(self, pid: int) -> list[tuple[int, int, int, int, str]]:
        if pid in self._maps:
            return self._maps[pid]
        regions = []
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    parts = line.split(maxsplit=5)
                    if len(parts) < 6 or parts[4] == "0":
                        continue
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    major, minor = (int(x, 16) for x in parts[3].split(":"))
                    dev, ino, path = os.makedev(major, minor), int(parts[4]), parts[5].strip()
                    regions.append((lo, hi, dev, ino, path))
                    self._files.setdefault((dev, ino), path)
        except OSError:
            pass
        self._maps[pid] = regions
        return regions

    def _scan_fds(self, pid: int) -> None:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return
        for fd in fds:
            try:
                st = os.stat(os.path.join(fd_dir, fd))
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("/"):
                self._files.setdefault((st.st_dev, st.st_ino), target)

    def files(self, pids: np.ndarray, devs: np.ndarray, inos: np.ndarray) -> list[str | None]:
        out: list[str | None] = []
        for pid, dev, ino in zip(pids.tolist(), devs.tolist(), inos.tolist(), strict=True):
            key = (dev, ino)
            if key not in self._files:
                self._read_maps(pid)
                if key not in self._files:
                    self._scan_fds(pid)
            out.append(self._files.get(key))
        return out

    def mappings(self, rec: np.ndarray) -> list[str | None]:
        """Path of the file behind each mmap record (by the address it returned)."""
        out: list[str | None] = []
        for call, flags, fd, pid, ret in zip(
            rec["call"].tolist(),
            rec["flags"].tolist(),
            rec["fd"].tolist(),
            rec["pid"].tolist(),
            rec["ret"].tolist(),
            strict=True,
        ):
            if call != 0 or fd < 0 or flags & MAP_ANONYMOUS or ret < 0:
                out.append(None)
                continue
            path = None
            for lo, hi, _dev, _ino, p in self._read_maps(pid):
                if lo <= ret < hi:
                    path = p
                    break
            if path is None:
                try:
                    path = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    path = None
            out.append(path)
        return out
