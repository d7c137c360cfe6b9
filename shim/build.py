"""Build the shim with the system C compiler into a per-user cache keyed by the source hash."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from pathlib import Path

from uvmtrace.recording.errors import UserError

LIB_NAME = "libuvmshim.so"
SOURCES = ("uvmshim.c", "uvmshim.h", "functions.h")
# Hidden visibility: only the hook symbols (marked in the source) are exported. No library
# besides libc: the shim must load into any image, including minimal ones without
# libdl/libpthread and musl ones (tests check NEEDED); the source finds dlsym & co. at run time.
CFLAGS = ("-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-U_FORTIFY_SOURCE")
LDFLAGS = ("-Wl,--as-needed",)


def _source_dir() -> Path:
    return Path(__file__).resolve().parent


def _source_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (_source_dir() / name).read_bytes())
    digest.update(" ".join(CFLAGS + LDFLAGS).encode())
    return digest.hexdigest()[:16]


# As root the library goes to a system directory that every user can read but only root can
# write: the traced command runs as the user behind sudo, and the dynamic loader opens the
# library as that user (root's own cache lies under a 0700 home). Never a directory from the
# invoking user's environment (`sudo -E`): a user-writable library preloaded into root processes
# would hand that user root.
SYSTEM_CACHE = Path("/var/cache/uvmtrace")


def _cache_root() -> Path:
    if os.geteuid() == 0:
        return SYSTEM_CACHE
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "uvmtrace"


def shim_path() -> Path:
    """Where `build_shim` puts the library for the current source (may not exist yet)."""
    return _cache_root() / f"shim-{_source_hash()}" / LIB_NAME


def _make_dirs(path: Path) -> None:
    """Create `path` and its missing parents, never through a symlink: 0755 under the system
    cache (root's), 0700 in a user's own cache."""
    mode = 0o755 if os.geteuid() == 0 else 0o700
    missing = [p for p in (path, *path.parents) if not os.path.lexists(p)]
    for part in reversed(missing):
        try:
            os.mkdir(part, mode)
            os.chmod(part, mode)  # mkdir's mode is masked by the umask
        except FileExistsError:
            pass
        except OSError as exc:
            raise UserError(f"cannot create {part}: {exc.strerror}") from None
    check_safe_path(path)


def check_safe_path(path: Path) -> None:
    """Raise unless `path` and every directory above it are owned by root or by us and writable
    by nobody else, none of them a symlink: nobody else can swap the library we preload."""
    me = os.geteuid()
    for part in (path, *path.parents):
        try:
            st = os.lstat(part)
        except OSError as exc:
            raise UserError(f"cannot check {part}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            # A system symlink (e.g. /var -> /private/var) is fine when root owns it; its
            # target is checked in turn.
            if st.st_uid != 0:
                raise UserError(f"{part} is a symlink not owned by root; remove it")
            check_safe_path(part.resolve())
            return
        # A sticky directory of root's (/tmp) lets nobody rename or delete what they don't own.
        sticky_root = part != path and st.st_uid == 0 and st.st_mode & stat.S_ISVTX
        if st.st_uid not in (0, me) or (st.st_mode & 0o022 and not sticky_root):
            raise UserError(
                f"{part} can be written by another user (owner uid {st.st_uid}, mode "
                f"{stat.S_IMODE(st.st_mode):o}); the shim cannot be preloaded from there safely"
            )


def find_compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise UserError(
        "no C compiler found to build the shim; install one "
        "(Debian/Ubuntu: apt-get install gcc libc6-dev; RHEL: dnf install gcc glibc-devel)"
    )


def build_shim(force: bool = False) -> Path:
    """Compile shim/uvmshim.c (if not cached already) and return the library's path."""
    target = shim_path()
    if target.is_file() and not target.is_symlink() and not force:
        check_safe_path(target)
        return target
    cc = find_compiler()
    _make_dirs(target.parent)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / LIB_NAME
        cmd = [cc, *CFLAGS, "-o", str(out), str(_source_dir() / "uvmshim.c"), *LDFLAGS]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            if "stdio.h" in proc.stderr or "dlfcn.h" in proc.stderr:
                raise UserError(
                    "the C compiler has no libc headers; install them (apt-get install libc6-dev)"
                )
            raise UserError(f"building the shim failed ({cc}): {first}")
        os.chmod(out, 0o755)  # readable by the user the command runs as
        os.replace(out, target)  # atomic: a concurrent build never exposes a half-written file
    return target


def glibc_needed(lib: Path) -> str | None:
    """Highest GLIBC_x.y symbol version the library needs (its ELF version-needs section)."""
    names = [v for v in elf_versions_needed(lib.read_bytes()) if re.fullmatch(r"GLIBC_[\d.]+", v)]
    if not names:
        return None
    return max(names, key=lambda v: tuple(int(x) for x in v[6:].split(".")))


def elf_versions_needed(data: bytes) -> list[str]:
    """Version names in SHT_GNU_verneed of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    out = []
    for sh in sections:
        if sh[1] != 0x6FFFFFFE:  # SHT_GNU_verneed
            continue
        strtab_off = sections[sh[6]][4]
        off, count = sh[4], sh[7]  # sh_info: number of entries
        for _ in range(count):
            _ver, cnt, _file, aux, nxt = struct.unpack_from("<HHIII", data, off)
            a = off + aux
            for _ in range(cnt):
                _hash, _flags, _other, name, anext = struct.unpack_from("<IHHII", data, a)
                end = data.index(b"\0", strtab_off + name)
                out.append(data[strtab_off + name : end].decode())
                a += anext
            off += nxt
    return out
