"""One self-contained HTML file: the conclusion, the charts (inline SVG) and the tables."""

from __future__ import annotations

import html
from typing import Any

from uvmtrace.analysis.charts import (
    cuda_chart,
    decomposition_chart,
    timeline_chart,
    variant_chart,
    variant_decomposition_chart,
)
from uvmtrace.analysis.summary_tables import summary_tables
from uvmtrace.analysis.tables import Table, diff_tables, report_tables

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
.conclusion{background:#f3f6fa;border-left:4px solid #2a6fb0;padding:.6em 1em;font-size:1.05em}
.conclusion p{margin:.3em 0} table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:.9em} td:not(:first-child){text-align:right}
th{background:#eee} h2{font-size:1.1em;margin-top:1.5em} .chart svg{max-width:100%;height:auto}
"""


def _page(title: str, conclusion: list[str], charts: list[str], tables: list[Table]) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1><div class='conclusion'>",
        *[f"<p>{esc(line)}</p>" for line in conclusion],
        "</div>",
        *[f"<div class='chart'>{svg}</div>" for svg in charts],
    ]
    for name, header, rows in tables:
        if not rows:
            continue
        parts.append(f"<h2>{esc(name)}</h2><table><tr>")
        parts += [f"<th>{esc(h)}</th>" for h in header]
        parts.append("</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def report_html(rep: dict[str, Any]) -> str:
    charts = [timeline_chart(rep["timeline"], "memory charged")] if rep.get("timeline") else []
    if (rep.get("cuda_memory") or {}).get("allocations"):
        charts.append(cuda_chart(rep["cuda_memory"], "CUDA"))
    return _page(
        f"uvmtrace report: {rep['run']['path']}", rep["conclusion"], charts, report_tables(rep)
    )


def diff_html(d: dict[str, Any]) -> str:
    charts = [decomposition_chart(d)]
    for side in ("a", "b"):
        tl = d["reports"][side].get("timeline")
        if tl:
            charts.append(timeline_chart(tl, f"{side.upper()} ({d[side]['path']})"))
    return _page(
        f"uvmtrace diff: A = {d['a']['path']}, B = {d['b']['path']}",
        d["conclusion"],
        charts,
        diff_tables(d),
    )


def summary_html(doc: dict[str, Any]) -> str:
    charts = [variant_chart(doc)]
    if doc["comparisons"]:
        charts.append(variant_decomposition_chart(doc))
    return _page(
        f"uvmtrace summary: {' '.join(doc['inputs'])}", doc["conclusion"], charts,
        summary_tables(doc),
    )  # fmt: skip
