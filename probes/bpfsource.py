"""Assemble the BPF program text for a set of probes: one config preamble, the shared scope
file, then one file per concern. Each concern's C lives in its own `*.bpf.c` file next to this."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from uvmtrace.host import kconfig

PROBES_DIR = Path(__file__).resolve().parent

MAX_PIDS = 32768
MAX_CGROUPS = 4096
MAX_AGG = 65536
SMALL_RING_PAGES = 64  # proc and query events: low rate


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
    shared_memcg = False
    for name in ("scope.bpf.c", *files):
        if name in ("memcg_kprobe.bpf.c", "memcg_tp.bpf.c", "memcg_raw.bpf.c") and not shared_memcg:
            parts.append((PROBES_DIR / "memcg.bpf.c").read_text())  # what every variant calls
            shared_memcg = True
        parts.append((PROBES_DIR / name).read_text())
    return "\n".join(parts)


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
        raise UserError(f"ring buffer size must be a power of two pages, not {pages}")
    return pages
