"""Assemble the BPF program text for a set of probes: one preamble of settings, `events.h`, then
each probe's `*.bpf.c` (registry.py says which) with the helper headers it includes by name.

BCC rewrites map calls (`pids.lookup(...)`) and declares tracepoint argument structs only in the
text it is handed, not in files that text includes, so a local `#include "NAME.bpf.h"` is
expanded here (each header once, where it is first included); `events.h` and system headers
are real includes (`-I` this directory)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from uvmtrace.host import kconfig

PROBES_DIR = Path(__file__).resolve().parent

MAX_PIDS = 32768
MAX_CGROUPS = 4096
MAX_AGG = 65536
SMALL_RING_PAGES = 64  # proc and query events: low rate
RING_PAGES = 256  # each busy ring, aggregated (the default; `record --ring-pages`)
RAW_RING_PAGES = 2048  # with --raw: 0 lost at ~700 k rows/s on a 2-vCPU VM, 1024 lost 9%

_LOCAL_HEADER = re.compile(r'^#include "([\w-]+\.bpf\.h)"[ \t]*$', re.MULTILINE)


def bpf_text(
    files: Iterable[str],
    *,
    raw: bool,
    ringbuf_pages: int,
    bucket_ns: int,
    small_pages: int,
    offsets: Mapping[str, int] | None = None,
) -> str:
    """`offsets`: kernel struct member offsets from BTF (kernlayout), for raw tracepoints."""
    defines = {
        "UVM_RAW": int(raw),
        "UVM_RINGBUF_PAGES": ringbuf_pages,
        "UVM_RINGBUF_PAGES_SMALL": small_pages,
        "UVM_BUCKET_NS": f"{bucket_ns}ULL",
        "UVM_JIFFY_NS": f"{jiffy_ns()}ULL",
        "UVM_MAX_PIDS": MAX_PIDS,
        "UVM_MAX_CGROUPS": MAX_CGROUPS,
        "UVM_MAX_AGG": MAX_AGG,
        **(offsets or {}),
    }
    parts = [f"#define {k} {v}" for k, v in defines.items()]
    parts.append('#include "events.h"')
    pasted: set[str] = set()
    parts.extend(expand_headers(name, pasted) for name in files)
    return "\n".join(parts)


def expand_headers(name: str, pasted: set[str]) -> str:
    """`name`'s text with its `#include "*.bpf.h"` lines replaced by those headers' text, each
    header once per program (`pasted`: the ones already in it)."""

    def paste(match: re.Match[str]) -> str:
        header = match.group(1)
        if header in pasted:
            return ""
        pasted.add(header)
        return expand_headers(header, pasted)

    return _LOCAL_HEADER.sub(paste, (PROBES_DIR / name).read_text())


def jiffy_ns() -> int:
    """Nanoseconds per jiffy (1e9 / CONFIG_HZ) from the running kernel's config; 0 when it
    cannot be found (the buckets then use bpf_ktime_get_ns)."""
    hz = kconfig.hz()
    return 1_000_000_000 // hz if hz else 0


def cflags() -> list[str]:
    return [f"-I{PROBES_DIR}", "-Wno-macro-redefined"]


def check_ring_pages(pages: int) -> int:
    """Ring buffers are a power-of-two number of pages."""
    from uvmtrace.recording.errors import UserError

    if pages < 1 or pages & (pages - 1):
        raise UserError(f"--ring-pages must be a power of two (BPF ring buffers), not {pages}")
    return pages
