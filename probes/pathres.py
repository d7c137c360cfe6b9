"""Files behind mappings and page-cache pages, resolved in user space from /proc/PID/maps and
/proc/PID/fd while the process still has them. A file whose process closed it and exited before
a drain (a short script writing its output) is looked for by inode under `search_roots` (the
command's working directory and the output's), at most once a second; else it stays null.

Overlayfs (a container reading a file of its image): the page cache belongs to the real inode
of the upper or lower layer, so the filemap tracepoint names that file's filesystem and inode,
while /proc/PID/fd and maps show the overlay's st_dev. For a non-directory, overlayfs reports
the real inode's number as st_ino when its layers share one filesystem, so a miss is matched by
inode among the process's overlay files whose layers sit on the event's filesystem. The path
kept is the one the process sees (e.g. /models/weights.bin); the host path of the layer file is
kept on the side (`host_paths`)."""

from __future__ import annotations

import collections
import os
import time

import numpy as np

from uvmtrace.host.procfs import open_fds

MAP_ANONYMOUS = 0x20
SEARCH_ENTRIES = 10_000  # directory entries one search reads at most (~10-30 ms here)
SEARCH_EVERY_S = 1.0


def overlay_layers(pid: int) -> dict[int, list[str]]:
    """Overlay mounts in `pid`'s mount namespace: overlay st_dev -> layer dirs (upper first)."""
    out: dict[int, list[str]] = {}
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            lines = f.readlines()
    except OSError:
        return out
    for line in lines:
        pre, sep, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] != "overlay":
            continue
        major, minor = (int(x) for x in fields[2].split(":"))
        layers = []
        for opt in tail[2].split(","):
            key, _, value = opt.partition("=")
            if key == "upperdir":
                layers.insert(0, value)
            elif key == "lowerdir":
                layers.extend(d for d in value.split(":") if d)
        out[os.makedev(major, minor)] = layers
    return out


class PathResolver:
    def __init__(self) -> None:
        self._files: dict[tuple[int, int], str] = {}  # (st_dev, inode) -> path
        self._maps: dict[int, list[tuple[int, int, int, int, str]]] = {}
        # per pid: inode -> (path in the process's view, overlay st_dev), for overlay files
        self._overlay: dict[int, dict[int, tuple[str, int]]] = {}
        self.host_paths: dict[str, str] = {}  # path as the process sees it -> layer file
        self.search_roots: list[str] = []  # where files of processes gone are looked for
        self._searched_at = -SEARCH_EVERY_S

    def forget_maps(self) -> None:
        """Mappings and open files change; read them again on the next drain."""
        self._maps.clear()
        self._overlay.clear()

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
        for st, _opener, target in open_fds(pid):
            if target.startswith("/"):
                self._files.setdefault((st.st_dev, st.st_ino), target)
                self._overlay.setdefault(pid, {}).setdefault(st.st_ino, (target, st.st_dev))

    def _from_overlay(self, pid: int, dev: int, ino: int) -> str | None:
        """The overlay file of `pid` whose real inode is (dev, ino), as `pid` sees it."""
        if pid not in self._overlay:
            self._scan_fds(pid)
        files = self._overlay.setdefault(pid, {})
        for _lo, _hi, mdev, mino, mpath in self._read_maps(pid):
            files.setdefault(mino, (mpath, mdev))
        found = files.get(ino)
        if found is None:
            return None
        path, overlay_dev = found
        for layer in overlay_layers(pid).get(overlay_dev, []):
            host = os.path.join(layer, path.lstrip("/"))
            try:
                st = os.stat(layer)
                real = os.stat(host)
            except OSError:
                continue
            if st.st_dev == dev and real.st_ino == ino:  # the layer file itself
                self.host_paths[path] = os.path.realpath(host)
                return path
        return None

    def files(self, pids: np.ndarray, devs: np.ndarray, inos: np.ndarray) -> list[str | None]:
        keys = list(zip(devs.tolist(), inos.tolist(), strict=True))
        out: list[str | None] = []
        for pid, key in zip(pids.tolist(), keys, strict=True):
            if key not in self._files:
                self._read_maps(pid)
                if key not in self._files:
                    self._scan_fds(pid)
                if key not in self._files:
                    path = self._from_overlay(pid, *key)
                    if path is not None:
                        self._files[key] = path
            out.append(self._files.get(key))
        missing = {key for key, path in zip(keys, out, strict=True) if path is None}
        if missing and self._search(missing):
            out = [self._files.get(key) for key in keys]
        return out

    def allow_search(self) -> None:
        """The next miss searches at once (the last drain: no later one would resolve it)."""
        self._searched_at = -SEARCH_EVERY_S

    def _search(self, missing: set[tuple[int, int]]) -> bool:
        """Walk `search_roots` breadth first (shallow files first; no symlinks followed, only the
        missing files' filesystems, at most SEARCH_ENTRIES entries) for regular files with a
        missing (dev, inode)."""
        now = time.monotonic()
        if not self.search_roots or now - self._searched_at < SEARCH_EVERY_S:
            return False
        self._searched_at = now
        devs = {dev for dev, _ in missing}
        found = False
        budget = SEARCH_ENTRIES
        queue = collections.deque(dict.fromkeys(self.search_roots))
        while queue and budget > 0:
            try:
                entries = os.scandir(queue.popleft())
            except OSError:
                continue
            with entries:
                for entry in entries:
                    budget -= 1
                    if budget <= 0:
                        break
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if st.st_dev not in devs:
                        continue  # another filesystem (a mount below the root)
                    if entry.is_dir(follow_symlinks=False):
                        queue.append(entry.path)
                    elif (st.st_dev, st.st_ino) in missing:
                        self._files[(st.st_dev, st.st_ino)] = entry.path
                        found = True
        return found

    def _mapped_at(self, pid: int, addr: int) -> str | None:
        for lo, hi, _dev, _ino, path in self._read_maps(pid):
            if lo <= addr < hi:
                return path
        return None

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
            path = self._mapped_at(pid, ret)
            if path is None:  # mapped after the maps were read (an exec since, a new library)
                self._maps.pop(pid, None)
                path = self._mapped_at(pid, ret)
            if path is None:
                # The fd may since have been closed and its number reused (a shell wrapper that
                # exec'd, a pipe of `$(...)`): only a file path is believable.
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    target = ""
                path = target if target.startswith("/") else None
            out.append(path)
        return out
