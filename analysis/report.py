"""Builds the report of one run and the diff of two as plain JSON-ready dicts (the shape is
`report_schema.json`); renderers only format them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uvmtrace.analysis.advice import diff_advice, reclaims, report_advice
from uvmtrace.analysis.attribution import attribute, timeline
from uvmtrace.analysis.baseline import baseline
from uvmtrace.analysis.conclusion import diff_conclusion, report_conclusion
from uvmtrace.analysis.cuda_memory import cuda_memory
from uvmtrace.analysis.diff import diff_runs
from uvmtrace.analysis.host_charges import by_kind, host_charges
from uvmtrace.analysis.load import RunData, load_run, recovery
from uvmtrace.analysis.phases import phases
from uvmtrace.analysis.reconcile import reconcile
from uvmtrace.analysis.sizing import DEFAULT_MIN_ALLOC, DEFAULT_TOLERANCE, infer_sizing

# 2: sizing rules (rule, residual_bytes, allocations; also_fits holds fits, not signal names),
# cuda_memory, the diff's decomposition.cuda
REPORT_VERSION = 2


def run_info(run: RunData) -> dict[str, Any]:
    meta = run.meta
    return {
        "path": str(run.path),
        "command": meta.command_line,
        "host": meta.host,
        "kernel": meta.kernel,
        "unified_memory": meta.gpu.unified_memory,
        "duration_s": round((run.t_end_ns - run.t0_ns) / 1e9, 6),
        "events": run.recording.num_rows,
        "streams": sorted(run.streams),
        "missing": run.missing,
        "recovery": recovery(meta),
    }


def report_of(
    run: RunData,
    min_alloc: int = DEFAULT_MIN_ALLOC,
    tolerance: float = DEFAULT_TOLERANCE,
    with_timeline: bool = True,
) -> dict[str, Any]:
    sizing = infer_sizing(run, min_alloc, tolerance)
    rep: dict[str, Any] = {
        "kind": "report",
        "version": REPORT_VERSION,
        "run": run_info(run),
        "phases": phases(run, sizing),
        "attribution": attribute(run),
        "sizing": sizing,
        "cuda_memory": cuda_memory(run),
        "reconciliation": reconcile(run),
        "reclaim": reclaims(run),
    }
    start = baseline(run)
    if start is not None:
        rep["baseline"] = start
    # each CUDA host-memory call joined to the kernel charges it caused (host_charges.py)
    rep.setdefault("cuda_memory", {})["host_charges"] = host_charges(run)
    if with_timeline:
        tl = timeline(run)
        tl["markers"] = [
            {"t_s": a["t_s"], "label": f"{a['event']} {a['bytes'] >> 20} MiB", "type": "allocation"}
            for a in sizing["allocations"]
        ] + [
            {"t_s": a["query_t_s"], "label": a["signal"], "type": "query"}
            for a in sizing["allocations"]
            if a["explained"]
        ]
        rep["timeline"] = tl
    rep["advice"] = report_advice(rep)
    rep["conclusion"] = report_conclusion(rep)
    return rep


def build_report(path: str | Path, **kw: Any) -> dict[str, Any]:
    return report_of(load_run(path), **kw)


def build_diff(
    path_a: str | Path,
    path_b: str | Path,
    min_alloc: int = DEFAULT_MIN_ALLOC,
    tolerance: float = DEFAULT_TOLERANCE,
    with_timeline: bool = True,
) -> dict[str, Any]:
    a, b = load_run(path_a), load_run(path_b)
    rep_a = report_of(a, min_alloc, tolerance, with_timeline)
    rep_b = report_of(b, min_alloc, tolerance, with_timeline)
    d: dict[str, Any] = {
        "kind": "diff",
        "version": REPORT_VERSION,
        "a": run_info(a),
        "b": run_info(b),
        **diff_runs(a, b, rep_a, rep_b),
        "host_charges": {
            side: by_kind(rep["cuda_memory"]["host_charges"])
            for side, rep in (("a", rep_a), ("b", rep_b))
        },
        "trust": {
            "a": rep_a["reconciliation"]["summary"]["line"],
            "b": rep_b["reconciliation"]["summary"]["line"],
        },
        "reports": {"a": rep_a, "b": rep_b},
    }
    d["advice"] = diff_advice(d)
    d["conclusion"] = diff_conclusion(d)
    return d
