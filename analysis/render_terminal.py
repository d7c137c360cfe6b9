"""Terminal output: the conclusion first, then rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from uvmtrace.analysis.summary_tables import summary_tables
from uvmtrace.analysis.tables import Table, diff_tables, report_tables


class PipeConsole(Console):
    """A Console that lets a closed pipe (`report | head -1`) end the program as a closed pipe,
    not with rich's own exit status 1: the caller decides (uvmtrace exits 0)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def _print(console: Console, conclusion: list[str], tables: list[Table]) -> None:
    for line in conclusion:
        console.print(line, highlight=False, markup=False)
    for title, header, rows in tables:
        if not rows:
            continue
        table = RichTable(title=title, title_justify="left", show_edge=False)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print()
        console.print(table)


def print_report(rep: dict[str, Any], console: Console | None = None) -> None:
    _print(console or PipeConsole(), rep["conclusion"], report_tables(rep))


def print_diff(d: dict[str, Any], console: Console | None = None) -> None:
    _print(console or PipeConsole(), d["conclusion"], diff_tables(d))


def print_summary(doc: dict[str, Any], console: Console | None = None) -> None:
    _print(console or PipeConsole(), doc["conclusion"], summary_tables(doc, compact=True))
