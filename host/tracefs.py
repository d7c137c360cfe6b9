"""Where tracefs is mounted, and what it offers: tracepoints and kprobe events."""

from __future__ import annotations

import os

# The kernel's own mount point first; older systems have it under debugfs only.
TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def mount_point() -> str | None:
    """The tracefs directory with an `events/` tree (readable by root only), or None."""
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


def tracepoint_exists(target: str) -> bool:
    """`category:event` has a directory under tracefs's events/."""
    root = mount_point()
    category, _, event = target.partition(":")
    return root is not None and os.path.isdir(os.path.join(root, "events", category, event))


def kprobes_available() -> bool:
    """CONFIG_KPROBE_EVENTS leaves `kprobe_events` in tracefs; without it BPF kprobes fail too."""
    root = mount_point()
    return root is not None and os.path.exists(os.path.join(root, "kprobe_events"))
