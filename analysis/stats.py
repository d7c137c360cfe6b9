"""Statistics of repeated runs: a mean with its 95% confidence interval (Student's t), and the
difference of two variants' means with Welch's interval and test (no equal-variance assumption:
a container's runs may scatter more than native ones).

Degenerate cases are answered, not guessed: one run gives no interval (None); runs without any
scatter give an exact difference (interval [d, d], significant when d != 0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as st

CONFIDENCE = 0.95


def describe(values: list[float]) -> dict[str, Any]:
    """n, mean, min, max, standard deviation and the 95% interval of the mean."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    n = int(x.size)
    if n == 0:
        return {"n": 0, "mean": None, "min": None, "max": None, "std": None,
                "ci_low": None, "ci_high": None}  # fmt: skip
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else None
    low = high = None
    if std is not None:
        half = float(st.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    return {"n": n, "mean": mean, "min": float(x.min()), "max": float(x.max()), "std": std,
            "ci_low": low, "ci_high": high}  # fmt: skip


def compare(base: list[float], other: list[float]) -> dict[str, Any]:
    """other - base: the difference of means, Welch's 95% interval, p value, significance."""
    a = np.asarray([v for v in base if v is not None], dtype=float)
    b = np.asarray([v for v in other if v is not None], dtype=float)
    out: dict[str, Any] = {"difference": None, "ci_low": None, "ci_high": None, "p": None,
                           "significant": None}  # fmt: skip
    if a.size == 0 or b.size == 0:
        return out
    d = float(b.mean() - a.mean())
    out["difference"] = d
    if a.size < 2 or b.size < 2:
        return out  # a difference, but nothing to judge its noise by
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        out.update(ci_low=d, ci_high=d, p=0.0 if d else 1.0, significant=d != 0)
        return out
    # Welch-Satterthwaite degrees of freedom
    dof = (va + vb) ** 2 / (
        (va**2 / (a.size - 1) if va else 0.0) + (vb**2 / (b.size - 1) if vb else 0.0)
    )
    half = float(st.t.ppf(0.5 + CONFIDENCE / 2, dof)) * se
    p = float(2 * st.t.sf(abs(d) / se, dof))
    out.update(ci_low=d - half, ci_high=d + half, p=p, significant=p < 1 - CONFIDENCE)
    return out
