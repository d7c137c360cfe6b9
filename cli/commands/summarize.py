"""`uvmtrace summarize DIR_OR_GLOB...`: many recordings (a sweep) as statistics per variant."""

from __future__ import annotations

from pathlib import Path

import click

from uvmtrace.cli.commands.report_options import report_options, write

HELP = """Summarize many recordings: one row per recording, statistics per variant, and each
variant against the baseline (the first variant), with the cause from the diff of the median
runs.

Recordings are every *.parquet below the directories given, or the files a glob names. The
variant and run come from `variant=NAME/run=I/` in the path (what `uvmtrace sweep` writes), else
each file is its own variant. The rows are written as summary.parquet (in the directory, when one
directory is given; see --parquet).

\b
Examples:
  uvmtrace summarize sweep-out
  uvmtrace summarize 'runs/*/recording.parquet' --baseline native --html summary.html
"""


@click.command("summarize", help=HELP)
@click.argument("inputs", nargs=-1, required=True)
@click.option("--baseline", default=None, help="The variant the others are compared with.")
@click.option("--parquet", "parquet", type=click.Path(path_type=Path), default=None,
              help="Where the per-recording rows go [default: DIR/summary.parquet, or "
              "./summary.parquet for several inputs].")  # fmt: skip
@report_options
def command(
    inputs: tuple[str, ...],
    baseline: str | None,
    parquet: Path | None,
    markdown: Path | None,
    html: Path | None,
    json_out: str | None,
    min_alloc_mib: int,
    tolerance: float,
) -> None:
    summarize_to(list(inputs), baseline, parquet, markdown, html, json_out,
                 min_alloc_mib << 20, tolerance)  # fmt: skip


def default_parquet(inputs: list[str]) -> Path:
    only = Path(inputs[0])
    one_dir = len(inputs) == 1 and only.is_dir()
    return only / "summary.parquet" if one_dir else Path("summary.parquet")


def summarize_to(
    inputs: list[str],
    baseline: str | None,
    parquet: Path | None,
    markdown: Path | None,
    html: Path | None,
    json_out: str | None,
    min_alloc: int,
    tolerance: float,
) -> None:
    # Imported here: polars and scipy are not needed by the other subcommands' start-up.
    from uvmtrace.analysis.output import write_frame
    from uvmtrace.analysis.summary import summarize

    doc, frame = summarize(inputs, baseline=baseline, min_alloc=min_alloc, tolerance=tolerance)
    target = parquet or default_parquet(inputs)
    write_frame(target, frame)
    doc["parquet"] = str(target)
    write(doc, markdown, html, json_out)
