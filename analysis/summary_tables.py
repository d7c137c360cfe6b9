"""The summary's tables as (title, header, rows of strings), shared by the terminal, Markdown and
HTML renderers (the same shape as tables.py's)."""

from __future__ import annotations

from typing import Any

from uvmtrace.analysis.summary import HEADLINE, interval
from uvmtrace.analysis.tables import Table
from uvmtrace.analysis.units import fmt_bytes

TERMINAL_RUNS = 40  # more recordings than this: the terminal lists variants only


def _v(value: float | None, unit: str, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:+.2f} s" if signed else f"{value:.2f} s"
    return fmt_bytes(value, signed=signed)


def _stat(m: dict[str, Any], unit: str, compact: bool) -> str:
    if m["mean"] is None:
        return "n/a"
    ci = f" ±{_v((m['ci_high'] - m['ci_low']) / 2, unit)}" if m["ci_low"] is not None else ""
    spread = "" if compact else f" [{_v(m['min'], unit)} - {_v(m['max'], unit)}]"
    return f"{_v(m['mean'], unit)}{ci}{spread}"


def summary_tables(doc: dict[str, Any], *, compact: bool = False) -> list[Table]:
    """compact: the terminal's narrower tables (every run only up to TERMINAL_RUNS)."""
    metrics = doc["metrics"]
    shown = [m for m in metrics if m["column"] in HEADLINE] + [
        m
        for m in metrics
        if m["column"] not in HEADLINE
        and (m["column"].startswith("peak_") or m["column"] in ("top_file_bytes", "duration_s"))
    ]
    variants_ = doc["variants"]
    variants = (
        "Per variant: mean ±95% CI half-width" + ("" if compact else " [min - max]"),
        ["figure", *[f"{v['variant']} ({v['runs']})" for v in doc["variants"]]],
        [
            [m["label"], *[_stat(v["metrics"][m["column"]], m["unit"], compact) for v in variants_]]
            for m in shown
        ],
    )
    compared: list[list[str]] = []
    for comp in doc["comparisons"]:
        for m in shown:
            c = comp["metrics"][m["column"]]
            if c["difference"] is None:
                continue
            if compact and m["column"] not in HEADLINE and not c["significant"]:
                continue  # the terminal lists the headline figures and what differs
            sig = {True: "yes", False: "no", None: "n/a"}[c["significant"]]
            p = "n/a" if c["p"] is None else f"{c['p']:.3g}"
            compared.append(
                [comp["variant"], m["label"], _v(c["difference"], m["unit"], True),
                 interval(c, m["unit"]).removeprefix("95% CI "), p, sig]
            )  # fmt: skip
    comparison = (
        f"Against the baseline ({doc['baseline']}): variant - baseline"
        + (" (other figures: where significant)" if compact else ""),
        ["variant", "figure", "difference", "95% CI", "p (Welch)", "significant"],
        compared,
    )

    def cause(comp: dict[str, Any]) -> dict[str, Any]:
        return (comp["median_runs"] or {}).get("cause") or {}

    causes = (
        "Main cause, from the diff of the median runs",
        ["variant", "cause", "bytes", *([] if compact else ["median runs (baseline, variant)"])],
        [
            [comp["variant"], cause(comp).get("what", "n/a"),
             _v(cause(comp).get("bytes"), "bytes", True),
             *([] if compact else [f"{(comp['median_runs'] or {}).get('a')}, "
                                   f"{(comp['median_runs'] or {}).get('b')}"])]
            for comp in doc["comparisons"]
        ],
    )  # fmt: skip
    tables: list[Table] = [variants, comparison, causes]
    runs = doc["runs"]
    if compact and len(runs) > TERMINAL_RUNS:
        return tables
    if compact:  # what fits a terminal; the files have every column
        header = [
            "variant",
            "run",
            "exit",
            "signal value",
            "KV",
            "peak charged",
            "top file",
            "trust",
        ]
        rows = [
            [
                r["variant"],
                str(r["run"]),
                _exit(r),
                _v(r.get("signal_free_bytes"), "bytes"),
                _v(r.get("kv_bytes"), "bytes"),
                _v(r.get("peak_bytes"), "bytes"),
                _v(r.get("top_file_bytes"), "bytes"),
                r.get("trust") or "-",
            ]
            for r in runs
        ]
    else:
        header = [
            "variant",
            "run",
            "exit",
            "signal",
            "signal value",
            "KV",
            "rule",
            "peak charged",
            "top file (peak)",
            "trust",
        ]
        rows = [
            [
                r["variant"],
                str(r["run"]),
                _exit(r),
                r.get("signal") or "-",
                _v(r.get("signal_free_bytes"), "bytes"),
                _v(r.get("kv_bytes"), "bytes"),
                r.get("rule") or "-",
                _v(r.get("peak_bytes"), "bytes"),
                f"{r.get('top_file') or '-'} ({_v(r.get('top_file_bytes'), 'bytes')})",
                r.get("trust") or (r.get("error") or "-")[:60],
            ]
            for r in runs
        ]
    tables.append(("Recordings", header, rows))  # fmt: skip
    return tables


def _exit(r: dict[str, Any]) -> str:
    if r.get("error"):
        return "unreadable"
    return "-" if r.get("exit_code") is None else str(r["exit_code"])
