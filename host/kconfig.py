"""The running kernel's build configuration (/proc/config.gz, else /boot/config-RELEASE)."""

from __future__ import annotations

import functools
import gzip
import os


def config_paths() -> tuple[str, ...]:
    return ("/proc/config.gz", f"/boot/config-{os.uname().release}")


@functools.lru_cache(maxsize=1)
def _options() -> dict[str, str] | None:
    """CONFIG_* -> value ('y', 'm', a number, a string; 'n' for "is not set") from the first
    readable config, or None when the kernel's config is nowhere to be read."""
    for path in config_paths():
        try:
            with open(path, "rb") as f:
                raw = f.read()
            text = (gzip.decompress(raw) if path.endswith(".gz") else raw).decode()
        except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError):
            continue
        options: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_"):
                key, _, value = line.partition("=")
                options[key] = value
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                options[line[2:].split()[0]] = "n"
        return options
    return None


def option(name: str) -> str | None:
    """The value of CONFIG_`name` ('n' when not set), or None when the config is not readable."""
    options = _options()
    if options is None:
        return None
    return options.get(name, "n")


def hz() -> int | None:
    """CONFIG_HZ (timer ticks a second), or None when unknown."""
    value = option("CONFIG_HZ")
    return int(value) if value is not None and value.isdigit() else None
