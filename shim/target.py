"""Whether the shim can serve a program, decided before it runs from its ELF interpreter.

The shim is a glibc library: CUDA and NVML exist for glibc only. A musl program (Alpine images,
tools built against musl) is not preloaded; a static program ignores LD_PRELOAD itself (its
dynamic children still get the shim). Programs this module cannot classify get the shim, which
bows out by itself at run time when it finds no glibc (and leaves a `.off` note saying so).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

PT_INTERP = 3
MAX_LINKS = 40


def elf_interpreter(data: bytes) -> str | None:
    """PT_INTERP of an ELF image ('' when it has none: static), None when not ELF."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        return None
    end = "<" if data[5] == 1 else ">"
    if data[4] == 2:  # ELF64
        phoff, phentsize, phnum = (
            struct.unpack_from(end + "Q", data, 0x20)[0],
            *struct.unpack_from(end + "HH", data, 0x36),
        )
        fmt, off_at, size_at = end + "I", 8, 32
    else:
        phoff, phentsize, phnum = (
            struct.unpack_from(end + "I", data, 0x1C)[0],
            *struct.unpack_from(end + "HH", data, 0x2A),
        )
        fmt, off_at, size_at = end + "I", 4, 16
    for i in range(phnum):
        ph = phoff + i * phentsize
        if ph + phentsize > len(data):
            return ""
        if struct.unpack_from(fmt, data, ph)[0] != PT_INTERP:
            continue
        word = "Q" if data[4] == 2 else "I"
        (off,) = struct.unpack_from(end + word, data, ph + off_at)
        (size,) = struct.unpack_from(end + word, data, ph + size_at)
        return data[off : off + size].split(b"\0", 1)[0].decode(errors="replace")
    return ""


def _musl(interp: str | None) -> bool:
    return interp is not None and "musl" in os.path.basename(interp)


def why_not_served(interp: str | None) -> str | None:
    """Why the shim cannot serve a program with this interpreter (None: it can, or unknown)."""
    if interp == "":
        return "statically linked: LD_PRELOAD does not apply (its dynamic children get the shim)"
    if _musl(interp):
        return f"musl libc ({interp}): not preloaded, the shim is for glibc programs"
    return None


def preloadable(interp: str | None) -> bool:
    """Whether to set LD_PRELOAD for it: not for musl; a static program passes it on."""
    return not _musl(interp)


class RootFs:
    """Files of a root filesystem given as layer directories, topmost first (a host root is one
    layer, `/`). Paths resolve inside it: absolute symlinks point into the root, never out."""

    def __init__(self, layers: Sequence[Path]) -> None:
        self.layers = [Path(p) for p in layers]

    def _lookup(self, rel: PurePosixPath) -> Path | None:
        for layer in self.layers:
            p = layer / rel
            if os.path.lexists(p):
                return p
        return None

    def resolve(self, path: str) -> Path | None:
        """The host path of the file `path` names inside the root, symlinks followed."""
        parts = list(PurePosixPath(path).parts[1:] if path.startswith("/") else [])
        done: list[str] = []
        links = 0
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            found = self._lookup(PurePosixPath(*done, name))
            if found is None:
                return None
            if found.is_symlink():
                links += 1
                if links > MAX_LINKS:
                    return None
                target = os.readlink(found)
                absolute = target.startswith("/")
                if absolute:
                    done = []
                # The link's target, then the rest of the path, relative to where it points.
                parts = list(PurePosixPath(target).parts[1 if absolute else 0 :]) + parts
                continue
            done.append(name)
        if not done:
            return None
        return self._lookup(PurePosixPath(*done))

    def which(self, name: str, path_var: str) -> Path | None:
        if "/" in name:
            return self.resolve(name if name.startswith("/") else "/" + name)
        for d in path_var.split(":"):
            if d.startswith("/"):
                found = self.resolve(f"{d.rstrip('/')}/{name}")
                if found is not None and found.is_file():
                    return found
        return None

    def program_interpreter(self, path: str, path_var: str, depth: int = 0) -> str | None:
        """The ELF interpreter of the program `path` runs ('' static, None unknown), through a
        `#!` script to its interpreter."""
        exe = self.which(path, path_var)
        if exe is None or depth > 4:
            return None
        try:
            with open(exe, "rb") as f:
                head = f.read(4096)
                if head[:4] == b"\x7fELF":
                    f.seek(0)
                    head = f.read(1 << 16)
        except OSError:
            return None
        if head[:2] == b"#!":
            words = head[2:].split(b"\n", 1)[0].split()
            if not words:
                return None
            return self.program_interpreter(words[0].decode(errors="replace"), path_var, depth + 1)
        return elf_interpreter(head)
