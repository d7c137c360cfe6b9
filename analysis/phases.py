"""The phases of a run, the landmarks two runs are aligned by: process start, first CUDA call,
the KV-sizing query, the KV allocation, the other largest allocations, the end."""

from __future__ import annotations

from typing import Any

import polars as pl

from uvmtrace.analysis.load import RunData

ALIGNABLE = ("start", "first_cuda_call", "sizing_query", "kv_allocation", "end")


def phases(run: RunData, sizing: dict[str, Any], largest: int = 3) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    # a recording of running processes starts when it attached to them
    starts = run.proc.filter(pl.col("event").is_in(["exec", "fork", "attach"])).sort("ts_ns")
    if starts.height:
        first = starts.row(0, named=True)
        out.append(_phase(run, "start", first["ts_ns"], f"pid {first['pid']} {first['event']}"))
    else:
        out.append(_phase(run, "start", run.t0_ns, "first event (no process start recorded)"))
    cuda = run.calls.filter(pl.col("stream") == "cuda").sort("ts_ns")
    if cuda.height:
        c = cuda.row(0, named=True)
        out.append(_phase(run, "first_cuda_call", c["ts_ns"], f"{c['event']} by pid {c['pid']}"))
    kv = sizing.get("kv")
    if kv:
        out.append(
            _phase(run, "sizing_query", kv["query_ts_ns"], f"{kv['signal']} by pid {kv['pid']}")
        )
        out.append(
            _phase(
                run, "kv_allocation", kv["ts_ns"], f"{kv['event']} by pid {kv['pid']}", kv["bytes"]
            )
        )
    others = sorted(
        (
            a
            for a in sizing.get("allocations", [])
            if a is not kv and a.get("ts_ns") != (kv or {}).get("ts_ns")
        ),
        key=lambda a: -a["bytes"],
    )[:largest]
    for i, a in enumerate(others, 1):
        out.append(
            _phase(
                run,
                f"large_allocation_{i}",
                a["ts_ns"],
                f"{a['event']} by pid {a['pid']}",
                a["bytes"],
            )
        )
    ends = run.proc.filter(pl.col("event") == "exit").sort("ts_ns")
    if ends.height:
        e = ends.row(-1, named=True)
        out.append(_phase(run, "end", e["ts_ns"], f"pid {e['pid']} exited ({e['result']})"))
    else:
        out.append(_phase(run, "end", run.t_end_ns, "last event"))
    return sorted(out, key=lambda p: p["t_s"])


def _phase(
    run: RunData, name: str, ts_ns: int, detail: str, nbytes: int | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "t_s": run.rel_s(ts_ns),
        "ts_ns": ts_ns,
        "detail": detail,
        "bytes": nbytes,
    }
