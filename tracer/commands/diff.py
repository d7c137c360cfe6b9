"""`uvmtrace diff A B`: why B's memory signal, and so its KV cache, was smaller than A's."""

from __future__ import annotations

from pathlib import Path

import click

from uvmtrace.analysis.sizing import DEFAULT_MIN_ALLOC, DEFAULT_TOLERANCE


@click.command(
    "diff",
    help="Explain why B got less memory than A (e.g. native vs Docker).\n\n"
    "\b\nExample:\n  uvmtrace diff native.parquet docker.parquet",
)
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--markdown", "markdown", type=click.Path(path_type=Path), help="Write Markdown.")
@click.option("--html", "html", type=click.Path(path_type=Path), help="Write self-contained HTML.")
@click.option(
    "--json",
    "json_out",
    is_flag=False,
    flag_value="-",
    default=None,
    help="JSON to FILE, or to stdout with a bare --json.",
)
@click.option(
    "--min-alloc-mib",
    default=DEFAULT_MIN_ALLOC >> 20,
    show_default=True,
    help="Smallest allocation considered for KV sizing.",
)
@click.option(
    "--tolerance",
    default=DEFAULT_TOLERANCE,
    show_default=True,
    help="How close bytes/free must be to a known fraction.",
)
def command(
    a: Path,
    b: Path,
    markdown: Path | None,
    html: Path | None,
    json_out: str | None,
    min_alloc_mib: int,
    tolerance: float,
) -> None:
    # Imported here: matplotlib and the renderers are not needed by `record`'s start-up.
    from uvmtrace.analysis.output import write_outputs
    from uvmtrace.analysis.report import build_diff

    d = build_diff(a, b, min_alloc=min_alloc_mib << 20, tolerance=tolerance)
    write_outputs(d, markdown=markdown, html=html, json_out=json_out)
