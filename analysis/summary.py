"""Summary of many recordings (a sweep): one row per recording, statistics per variant, and each
variant against the baseline with the cause taken from the diff of the median runs.

Recordings are found in directories (every `*.parquet` below them, summaries excluded) or by glob.
The variant and run come from the hive-style path `variant=NAME/run=I/` that `uvmtrace sweep`
writes; elsewhere the variant is the file's name and the run 1. A `sweep.json` in a directory
given (written by `uvmtrace sweep`) supplies the variants' order (the first is the baseline) and
the variants the sweep skipped, with the reason.

Each recording is read once (load.py's one pass) and reduced to its row before the next is read,
so hundreds of recordings take the memory of one (each keeps only its sizing inputs: its large
allocations and memory queries, a few KiB). A row computes only what it shows: the charged levels
by kind and the top file (not every cgroup, item and process), CUDA peaks by kind (not by library
or over time), and the sizing fit without the report's context -- fitted for all recordings in
one pass (`sizing.sized_allocations`): per recording, the fit's cost was the fixed cost of its
~50 polars operations. Two more diffs per variant read the median runs.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any

import polars as pl

from uvmtrace.analysis.attribution import file_deltas, kind_charges, net_charges
from uvmtrace.analysis.cuda_memory import cuda_deltas
from uvmtrace.analysis.items import CUDA_MEMORY_KINDS, DEVICE_MEMORY_KINDS, KIND_LABEL, KINDS
from uvmtrace.analysis.levels import peak_end_plan
from uvmtrace.analysis.load import RunData, load_run
from uvmtrace.analysis.reconcile import reconcile
from uvmtrace.analysis.report import REPORT_VERSION, build_diff
from uvmtrace.analysis.sizing import (
    DEFAULT_MIN_ALLOC,
    DEFAULT_TOLERANCE,
    SizingInputs,
    sized_allocations,
    sizing_inputs,
)
from uvmtrace.analysis.stats import compare, describe
from uvmtrace.analysis.units import fmt_bytes
from uvmtrace.recording.errors import RecordingError, UserError

SWEEP_STATE = "sweep.json"
SUMMARY_PREFIX = "summary"

# (column, label, unit): the figures summarised per variant and compared with the baseline
METRICS: list[tuple[str, str, str]] = [
    ("kv_bytes", "KV cache", "bytes"),
    ("signal_free_bytes", "sizing signal at the query", "bytes"),
    ("peak_bytes", "peak charged memory", "bytes"),
    ("end_bytes", "charged memory at the end", "bytes"),
    *[(f"peak_{k}_bytes", f"peak {KIND_LABEL[k]}", "bytes") for k in KINDS],
    *[(f"end_{k}_bytes", f"end {KIND_LABEL[k]}", "bytes") for k in KINDS],
    ("top_file_bytes", "page cache of the top file", "bytes"),
    ("cuda_device_peak_bytes", "CUDA device memory, peak", "bytes"),
    *[(f"cuda_{k}_peak_bytes", f"CUDA {k} memory, peak", "bytes") for k in CUDA_MEMORY_KINDS],
    ("duration_s", "duration", "s"),
]
# the figures the conclusion states for each variant, in this order
HEADLINE = ("kv_bytes", "signal_free_bytes", "peak_bytes")


# ---- finding recordings ---------------------------------------------------------------------


def find_recordings(inputs: list[str]) -> tuple[list[Path], dict[str, Any] | None]:
    """The recordings named by directories, files or globs (sorted, each once), and the sweep
    state of the first directory that has one."""
    found: list[Path] = []
    state: dict[str, Any] | None = None
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            if state is None and (path / SWEEP_STATE).is_file():
                try:
                    state = json.loads((path / SWEEP_STATE).read_text())
                except ValueError:
                    raise UserError(f"{path / SWEEP_STATE}: not valid JSON") from None
            # a sweep's own layout (its setup may hold anything); elsewhere every Parquet file
            # but summaries
            swept = (path / SWEEP_STATE).is_file()
            found += (
                list(path.glob("variant=*/run=*/recording.parquet"))
                if swept
                else [p for p in path.rglob("*.parquet") if not p.name.startswith(SUMMARY_PREFIX)]
            )
        elif path.is_file():
            found.append(path)
        elif any(c in item for c in "*?["):
            found += [Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file()]
        else:
            raise UserError(f"{item}: no such file or directory")
    unique = sorted(set(found))
    if not unique:
        raise UserError(f"no recordings (*.parquet) found in {' '.join(inputs)}")
    return unique, state


def variant_and_run(path: Path) -> tuple[str, int]:
    parts = {k: v for k, _, v in (p.partition("=") for p in path.parts if "=" in p)}
    variant = parts.get("variant") or path.stem
    try:
        run = int(parts.get("run", 1))
    except ValueError:
        run = 1
    return variant, run


# ---- one row per recording ------------------------------------------------------------------


def _cuda(run: RunData) -> dict[str, int | None]:
    """Peak CUDA memory in all (device kinds) and by kind, as cuda_memory.py counts them; None
    without a CUDA stream."""
    if "cuda" not in run.streams:
        return {"cuda_device_peak_bytes": None} | {
            f"cuda_{k}_peak_bytes": None for k in CUDA_MEMORY_KINDS
        }
    deltas = cuda_deltas(run).lazy()
    device = deltas.filter(pl.col("kind").is_in(sorted(DEVICE_MEMORY_KINDS)))
    total, kinds = pl.collect_all([peak_end_plan(device, []), peak_end_plan(deltas, ["kind"])])
    by_kind = dict(kinds.select("kind", "peak").iter_rows())
    return {"cuda_device_peak_bytes": int(total["peak"][0]) if total.height else 0} | {
        f"cuda_{k}_peak_bytes": by_kind.get(k, 0) for k in CUDA_MEMORY_KINDS
    }


def _charged(run: RunData) -> dict[str, Any]:
    """Peak and end charged memory in all and by kind, and the file whose page cache peaked
    highest (ties: higher end, then path), as attribution.py counts them: three plans of its
    frames collected together."""
    files = file_deltas(run).lazy()
    top_file = (
        peak_end_plan(files, ["path"])
        .filter(pl.col("peak") > 0)
        .sort(["peak", "end", "path"], descending=[True, True, False], nulls_last=True)
        .head(1)
        .join(
            files.filter(pl.col("bytes") > 0)
            .group_by("path")
            .agg(pl.col("cgroup_id").mode().first()),
            on="path",
            how="left",
        )
    )
    total, by_kind, top = pl.collect_all(
        [
            peak_end_plan(net_charges(run).lazy(), []),
            peak_end_plan(kind_charges(run).lazy(), ["kind"]),
            top_file,
        ]
    )
    kinds = {r["kind"]: r for r in by_kind.iter_rows(named=True)}
    first = top.row(0, named=True) if top.height else None
    return {
        "peak_bytes": total["peak"][0] if total.height else None,
        "end_bytes": total["end"][0] if total.height else None,
        **{f"peak_{k}_bytes": (kinds.get(k) or {}).get("peak") for k in KINDS},
        **{f"end_{k}_bytes": (kinds.get(k) or {}).get("end") for k in KINDS},
        "top_file": first["path"] if first else None,
        "top_file_bytes": first["peak"] if first else None,
        "top_file_cgroup": run.cgroup_name(first["cgroup_id"]) if first else None,
    }


def _row(path: Path, min_alloc: int) -> tuple[dict[str, Any], SizingInputs | None]:
    """A recording's row but its sizing, and what its sizing needs."""
    variant, run_no = variant_and_run(path)
    row: dict[str, Any] = {"path": str(path), "variant": variant, "run": run_no, "error": None}
    try:
        run = load_run(path)
    except (RecordingError, UserError) as exc:
        row["error"] = str(exc)
        return row, None
    meta = run.meta
    trust = reconcile(run)["summary"]
    row.update(
        {
            "command": meta.command_line,
            "exit_code": meta.exit_code,
            "duration_s": round((run.t_end_ns - run.t0_ns) / 1e9, 6),
            **_charged(run),
            **_cuda(run),
            "trust": trust.get("trust"),
            "trust_line": trust.get("line"),
            "lost_events": trust.get("lost_events"),
        }
    )
    return row, sizing_inputs(run, min_alloc)


def recording_rows(paths: list[Path], min_alloc: int, tolerance: float) -> list[dict[str, Any]]:
    """One row per recording (an unreadable one: its error); the sizing of all fitted at once."""
    done = [_row(p, min_alloc) for p in paths]
    sized = sized_allocations([inputs for _, inputs in done], min_alloc, tolerance)
    for (row, _), kv in zip(done, sized, strict=True):
        if row["error"] is None:
            row.update(
                {
                    "signal": kv["signal"] if kv else None,
                    "signal_free_bytes": kv["query_free_bytes"] if kv else None,
                    "kv_bytes": kv["bytes"] if kv else None,
                    "kv_fraction": kv["fraction"] if kv else None,
                    "rule": _rule(kv),
                }
            )
    return [row for row, _ in done]


def recording_row(path: Path, min_alloc: int, tolerance: float) -> dict[str, Any]:
    return recording_rows([path], min_alloc, tolerance)[0]


def _rule(kv: dict[str, Any] | None) -> str | None:
    """`fraction_of_free 0.9 x cuMemGetInfo`: the rule sizing.py fitted, its fraction, signal."""
    if not kv:
        return None
    fraction = f" {kv['fraction']:g}" if kv.get("fraction") is not None else ""
    return f"{kv.get('rule') or 'fraction'}{fraction} x {kv['signal']}"


_SCHEMA = {
    "path": pl.String, "variant": pl.String, "run": pl.Int64, "error": pl.String,
    "command": pl.String, "exit_code": pl.Int64, "duration_s": pl.Float64,
    "signal": pl.String, "signal_free_bytes": pl.Int64, "kv_bytes": pl.Int64,
    "kv_fraction": pl.Float64, "rule": pl.String, "peak_bytes": pl.Int64, "end_bytes": pl.Int64,
    **{f"peak_{k}_bytes": pl.Int64 for k in KINDS}, **{f"end_{k}_bytes": pl.Int64 for k in KINDS},
    "top_file": pl.String, "top_file_bytes": pl.Int64, "top_file_cgroup": pl.String,
    "cuda_device_peak_bytes": pl.Int64,
    **{f"cuda_{k}_peak_bytes": pl.Int64 for k in CUDA_MEMORY_KINDS},
    "trust": pl.String, "trust_line": pl.String,
    "lost_events": pl.Int64,
}  # fmt: skip


def recordings_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=_SCHEMA).sort("variant", "run")


# ---- per variant, and against the baseline --------------------------------------------------


def _order(frame: pl.DataFrame, state: dict[str, Any] | None, baseline: str | None) -> list[str]:
    present = frame["variant"].unique(maintain_order=True).to_list()
    planned = [v["name"] for v in (state or {}).get("variants", []) if v["name"] in present]
    order = planned + sorted(v for v in present if v not in planned)
    if baseline is not None:
        if baseline not in order:
            raise UserError(f"--baseline {baseline}: no such variant ({', '.join(order)})")
        order.remove(baseline)
        order.insert(0, baseline)
    return order


def _median_run(runs: pl.DataFrame) -> dict[str, Any]:
    """The run in the middle by KV bytes (then signal, then peak): the one the diff explains."""
    for col in HEADLINE:
        ok = runs.filter(pl.col(col).is_not_null())
        if ok.height:
            ranked = ok.sort(col, "run")
            return ranked.row((ranked.height - 1) // 2, named=True)
    return runs.sort("run").row((runs.height - 1) // 2, named=True)


def _cause(d: dict[str, Any]) -> dict[str, Any] | None:
    """The largest part of the diff's decomposition that moves the sizing signal the way it
    moved (B charged more where B's signal was lower), named as specifically as the diff allows:
    the file and cgroup for page cache. Without a signal difference, the largest part either
    way. Free memory that was already gone before the run began is host drift, not the variant:
    stated next to the cause when it was larger."""
    dec = d["decomposition"]
    parts: list[tuple[int, str, str]] = []
    for k in dec["by_kind"]:
        what = k["label"]
        if k["key"] == "file" and dec["by_file"]:
            f = next((r for r in dec["by_file"] if r.get("b_in_scope")), dec["by_file"][0])
            where = f" charged to {f['b_cgroup']}" if f.get("b_cgroup") else ""
            what = f"page cache of {f['key']}{where}"
        parts.append((k["difference"], k["key"], what))
    cuda = dec.get("cuda_device_bytes")
    if isinstance(cuda, int) and cuda:
        parts.append((cuda, "cuda", "CUDA device memory"))
    signal = dec.get("signal_difference_bytes")
    if signal:
        parts = [p for p in parts if (p[0] > 0) == (signal > 0)] or parts
    if not parts:
        return None
    nbytes, key, what = max(parts, key=lambda p: abs(p[0]))
    line = f"{what}: {fmt_bytes(nbytes, signed=True)}"
    drift = dec.get("baseline_bytes")
    if drift and abs(drift) > abs(nbytes):
        line += (
            f" (larger: the host had {fmt_bytes(abs(drift))} "
            f"{'less' if drift > 0 else 'more'} free memory before the variant's run began)"
        )
    return {"part": key, "what": what, "bytes": nbytes, "host_drift_bytes": drift, "line": line}


def _decomposition(d: dict[str, Any]) -> dict[str, int]:
    """Signal difference (baseline - variant) and its parts, for the per-variant chart."""
    dec = d["decomposition"]
    out: dict[str, int] = {}
    if dec.get("signal_difference_bytes") is not None:
        out["signal difference"] = dec["signal_difference_bytes"]
    if dec.get("baseline_bytes"):
        out["free before start"] = dec["baseline_bytes"]
    if dec.get("cuda_device_bytes"):
        out["CUDA device"] = dec["cuda_device_bytes"]
    for k in dec["by_kind"]:
        out[k["label"]] = k["difference"]
    if dec.get("unexplained_bytes") is not None:
        out["unexplained"] = dec["unexplained_bytes"]
    return out


def _explain(
    base: dict[str, Any], other: dict[str, Any], min_alloc: int, tolerance: float
) -> dict[str, Any]:
    try:
        d = build_diff(base["path"], other["path"], min_alloc, tolerance, with_timeline=False)
    except (RecordingError, UserError) as exc:
        return {"error": str(exc)}
    dec = d["decomposition"]
    top = next((f for f in dec["by_file"] if f.get("b_in_scope")), None)
    return {
        "a": base["path"],
        "b": other["path"],
        "cause": _cause(d),
        # the file whose page cache differs most, charged to the variant's own cgroups
        "top_file": {"path": top["key"], "cgroup": top["b_cgroup"], "bytes": top["difference"]}
        if top
        else None,
        "conclusion": d["conclusion"],
        "decomposition": _decomposition(d),
    }


def summarize(
    inputs: list[str],
    *,
    baseline: str | None = None,
    min_alloc: int = DEFAULT_MIN_ALLOC,
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[dict[str, Any], pl.DataFrame]:
    """The summary document (JSON-ready, kind "summary") and the per-recording frame."""
    paths, state = find_recordings(inputs)
    frame = recordings_frame(recording_rows(paths, min_alloc, tolerance))
    good = frame.filter(pl.col("error").is_null())
    if good.is_empty():
        raise UserError(f"none of the {frame.height} recordings could be read")
    order = _order(good, state, baseline)
    rank = {v: i for i, v in enumerate(order)}
    frame = frame.sort(pl.col("variant").replace_strict(rank, default=len(rank)), "variant", "run")
    metrics = [(c, label, unit) for c, label, unit in METRICS if good[c].null_count() < good.height]
    per_variant = []
    runs_of = {v: good.filter(pl.col("variant") == v) for v in order}
    for v in order:
        runs = runs_of[v]
        per_variant.append(
            {
                "variant": v,
                "runs": runs.height,
                "failed_runs": runs.filter(pl.col("exit_code") != 0).height,
                "signals": sorted(runs["signal"].drop_nulls().unique().to_list()),
                "rules": sorted(runs["rule"].drop_nulls().unique().to_list()),
                "trust": sorted(runs["trust"].drop_nulls().unique().to_list()),
                "metrics": {c: describe(runs[c].to_list()) for c, _, _ in metrics},
            }
        )
    base_name = order[0]
    base_runs = runs_of[base_name]
    base_median = _median_run(base_runs)
    comparisons = []
    for v in order[1:]:
        runs = runs_of[v]
        comparisons.append(
            {
                "variant": v,
                "baseline": base_name,
                "metrics": {
                    c: compare(base_runs[c].to_list(), runs[c].to_list()) for c, _, _ in metrics
                },
                "median_runs": _explain(base_median, _median_run(runs), min_alloc, tolerance),
            }
        )
    skipped = [
        {"variant": v["name"], "why": v["skipped"]}
        for v in (state or {}).get("variants", [])
        if v.get("skipped")
    ]
    doc: dict[str, Any] = {
        "kind": "summary",
        "version": REPORT_VERSION,
        "inputs": inputs,
        "baseline": base_name,
        "recordings": frame.height,
        "unreadable": frame.filter(pl.col("error").is_not_null())
        .select("path", "error")
        .to_dicts(),
        "metrics": [{"column": c, "label": label, "unit": unit} for c, label, unit in metrics],
        "variants": per_variant,
        "comparisons": comparisons,
        "skipped": skipped,
        "runs": frame.drop("trust_line").to_dicts(),
    }
    doc["conclusion"] = summary_conclusion(doc)
    return doc, frame


# ---- the conclusion -------------------------------------------------------------------------


def _fmt(value: float | None, unit: str, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:+.2f} s" if signed else f"{value:.2f} s"
    return fmt_bytes(value, signed=signed)


def interval(c: dict[str, Any], unit: str) -> str:
    if c["ci_low"] is None:
        return "no interval: fewer than 2 runs"
    return f"95% CI {_fmt(c['ci_low'], unit, True)} to {_fmt(c['ci_high'], unit, True)}"


def summary_conclusion(doc: dict[str, Any]) -> list[str]:
    labels = {m["column"]: (m["label"], m["unit"]) for m in doc["metrics"]}
    headline = [c for c in HEADLINE if c in labels]
    base = doc["variants"][0]
    lines = []
    figures = []
    for col in headline:
        m = base["metrics"][col]
        label, unit = labels[col]
        ci = (
            f" (95% CI {_fmt(m['ci_low'], unit)} to {_fmt(m['ci_high'], unit)})"
            if m["ci_low"] is not None
            else ""
        )
        figures.append(f"{label} {_fmt(m['mean'], unit)}{ci}")
    lines.append(
        f"Baseline {base['variant']} ({base['runs']} runs): "
        + "; ".join(figures or ["no figures"])
        + "."
    )
    for comp in doc["comparisons"]:
        v = comp["variant"]
        runs = next(x["runs"] for x in doc["variants"] if x["variant"] == v)
        differ = [c for c in headline if comp["metrics"][c]["significant"]]
        parts = []
        for col in headline:
            c = comp["metrics"][col]
            label, unit = labels[col]
            verdict = "significant" if c["significant"] else "not significant"
            if c["significant"] is None:
                verdict = "not judged"
            parts.append(
                f"{label} {_fmt(c['difference'], unit, True)} ({interval(c, unit)}, {verdict})"
            )
        # the other figures are named where they differ: the page cache a container was
        # charged can be significant while the signal's noise hides it in the KV size
        others = [
            f"{labels[c][0]} {_fmt(m['difference'], labels[c][1], True)} "
            f"({interval(m, labels[c][1])})"
            for c, m in comp["metrics"].items()
            # the end figures repeat the peaks in a run that holds what it took
            if c not in headline and not c.startswith("end_") and m["significant"]
        ]
        differ += [c for c, m in comp["metrics"].items()
                   if c not in headline and c != "duration_s" and m["significant"]]  # fmt: skip
        lead = "differs from" if differ else "does not differ significantly from"
        line = f"{v} ({runs} runs) {lead} {comp['baseline']}: " + "; ".join(parts) + "."
        if others:
            line += " Also significant: " + "; ".join(others) + "."
        cause = (comp["median_runs"] or {}).get("cause")
        if cause:
            line += f" Main cause (diff of the median runs): {cause['line']}."
        elif (comp["median_runs"] or {}).get("error"):
            line += f" The diff of the median runs failed: {comp['median_runs']['error']}."
        lines.append(line)
    failed = [f"{x['variant']} {x['failed_runs']}" for x in doc["variants"] if x["failed_runs"]]
    if failed:
        lines.append("Runs whose command exited non-zero (included): " + ", ".join(failed) + ".")
    for s in doc["skipped"]:
        lines.append(f"{s['variant']}: skipped ({s['why']}).")
    if doc["unreadable"]:
        lines.append(f"{len(doc['unreadable'])} recording(s) could not be read (see the table).")
    return lines
