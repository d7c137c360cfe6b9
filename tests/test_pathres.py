"""Paths of page-cache files whose process has gone: found by inode under the search roots."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from uvmtrace.probes.pathres import PathResolver

GONE = 2**22 + 7  # above the default pid_max: no such process


def lookup(res: PathResolver, *files: Path) -> list[str | None]:
    st = [f.stat() for f in files]
    return res.files(
        np.array([GONE] * len(st)),
        np.array([s.st_dev for s in st], dtype=np.uint64),
        np.array([s.st_ino for s in st], dtype=np.uint64),
    )


def test_a_file_written_by_a_process_gone_is_found_under_the_roots(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "data.bin").write_bytes(b"x" * 4096)
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere.bin"
    outside.write_bytes(b"y")
    try:
        res = PathResolver()
        assert lookup(res, deep / "data.bin") == [None]  # no roots: it stays unknown
        res.search_roots = [str(tmp_path)]
        res.allow_search()
        assert lookup(res, deep / "data.bin", outside) == [str(deep / "data.bin"), None]
    finally:
        outside.unlink()


def test_symlinks_are_not_followed_and_searches_are_rate_limited(tmp_path: Path) -> None:
    real = tmp_path.parent / f"{tmp_path.name}-target"
    real.mkdir()
    (real / "f.bin").write_bytes(b"z")
    os.symlink(real, tmp_path / "link")
    try:
        res = PathResolver()
        res.search_roots = [str(tmp_path)]
        assert lookup(res, real / "f.bin") == [None]  # reached only through the symlink
        (tmp_path / "late.bin").write_bytes(b"w")
        assert lookup(res, tmp_path / "late.bin") == [None]  # a search ran < 1 s ago
        res.allow_search()
        assert lookup(res, tmp_path / "late.bin") == [str(tmp_path / "late.bin")]
    finally:
        (real / "f.bin").unlink()
        real.rmdir()
