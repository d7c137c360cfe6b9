"""Program runs the kernel skipped: a tracing program is not re-entered on a CPU where it (raw
tracepoints) or any tracing program (classic tracepoints, kprobes) is already running, e.g. a
memcg update in an IRQ that interrupted the same probe. Each skip is one event never seen; the
kernel counts them per program (bpf_prog_info.recursion_misses, kernel >= 5.12)."""

from __future__ import annotations

import ctypes as ct

from uvmtrace.probes import bpfmaps

# Offset of recursion_misses in the uapi struct bpf_prog_info. The struct only ever grows at
# its end (it is ABI), so the offset is the same on every kernel that has the field; an older
# kernel returns a shorter struct and the count is unknown.
RECURSION_MISSES_OFF = 208
_INFO_LEN = 256


def recursion_misses(prog_fd: int) -> int | None:
    buf = (ct.c_uint8 * _INFO_LEN)()
    try:
        size = bpfmaps.obj_info(prog_fd, buf)
    except OSError:
        return None
    if size < RECURSION_MISSES_OFF + 8:
        return None
    return int.from_bytes(bytes(buf[RECURSION_MISSES_OFF : RECURSION_MISSES_OFF + 8]), "little")
