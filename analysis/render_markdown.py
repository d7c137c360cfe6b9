"""Markdown output: the conclusion as the first paragraph, then pipe tables."""

from __future__ import annotations

from typing import Any

from uvmtrace.analysis.summary_tables import summary_tables
from uvmtrace.analysis.tables import Table, diff_tables, report_tables


def _md(title: str, conclusion: list[str], tables: list[Table]) -> str:
    out = [f"# {title}", "", *[f"{line}  " for line in conclusion], ""]
    for name, header, rows in tables:
        if not rows:
            continue
        out += [
            f"## {name}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
        ]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def report_markdown(rep: dict[str, Any]) -> str:
    return _md(f"uvmtrace report: {rep['run']['path']}", rep["conclusion"], report_tables(rep))


def diff_markdown(d: dict[str, Any]) -> str:
    return _md(
        f"uvmtrace diff: A = {d['a']['path']}, B = {d['b']['path']}",
        d["conclusion"],
        diff_tables(d),
    )


def summary_markdown(doc: dict[str, Any]) -> str:
    return _md(
        f"uvmtrace summary: {' '.join(doc['inputs'])}", doc["conclusion"], summary_tables(doc)
    )
