"""`uvmtrace report RUN`: where the bytes went in one recording and what sized the KV cache."""

from __future__ import annotations

from pathlib import Path

import click

from uvmtrace.cli.commands.report_options import report_options, write


@click.command(
    "report",
    help="Explain one recording: where the bytes went and what sized the KV cache.\n\n"
    "\b\nExample:\n  uvmtrace report run.parquet --html report.html",
)
@click.argument("run", type=click.Path(path_type=Path))
@report_options
def command(
    run: Path,
    markdown: Path | None,
    html: Path | None,
    json_out: str | None,
    min_alloc_mib: int,
    tolerance: float,
) -> None:
    from uvmtrace.analysis.report import build_report

    write(build_report(run, min_alloc=min_alloc_mib << 20, tolerance=tolerance),
          markdown, html, json_out)  # fmt: skip
