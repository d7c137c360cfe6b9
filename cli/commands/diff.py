"""`uvmtrace diff A B`: why B's memory signal, and so its KV cache, was smaller than A's."""

from __future__ import annotations

from pathlib import Path

import click

from uvmtrace.cli.commands.report_options import report_options, write


@click.command(
    "diff",
    help="Explain why B got less memory than A (e.g. native vs Docker).\n\n"
    "\b\nExample:\n  uvmtrace diff native.parquet docker.parquet",
)
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@report_options
def command(
    a: Path,
    b: Path,
    markdown: Path | None,
    html: Path | None,
    json_out: str | None,
    min_alloc_mib: int,
    tolerance: float,
) -> None:
    from uvmtrace.analysis.report import build_diff

    write(build_diff(a, b, min_alloc=min_alloc_mib << 20, tolerance=tolerance),
          markdown, html, json_out)  # fmt: skip
