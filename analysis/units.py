"""How numbers are written in reports: bytes in binary units, times in seconds since start."""

from __future__ import annotations

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30


def fmt_bytes(n: int | float | None, *, signed: bool = False) -> str:
    """`27.7 GiB`, `512.0 MiB`, `-3.0 GiB`; `n/a` for a missing value."""
    if n is None:
        return "n/a"
    sign = "+" if signed and n > 0 else ("-" if n < 0 else "")
    v = abs(float(n))
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if v >= size:
            return f"{sign}{v / size:.1f} {unit}"
    return f"{sign}{v:.0f} B"


def fmt_s(t: float | None) -> str:
    return "n/a" if t is None else f"{t:.1f} s"


def fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"
