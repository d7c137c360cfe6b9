"""`uvmtrace sweep PLAN.toml -o DIR`: every variant of a plan, repeated, recorded, summarized."""

from __future__ import annotations

from pathlib import Path

import click

from uvmtrace.recording.errors import UserError
from uvmtrace.recording.safefs import give_to
from uvmtrace.sweep.run import run_sweep
from uvmtrace.tracer.launch import invoking_owner

HELP = """Run an experiment: each variant of PLAN (native, docker/podman run, chroot, a memory
limit, an environment) `repeats` times, interleaved, each run recorded with `uvmtrace record`
into DIR/variant=NAME/run=I/recording.parquet; then `uvmtrace summarize DIR` (summary.parquet,
summary.json, summary.html in DIR).

Ctrl-C keeps the finished runs; --resume continues. A variant this host cannot run (no podman,
a missing image) is skipped with the reason. The plan's format: docs/sweep.md. Needs root.

\b
Example:
  sudo uvmtrace sweep examples/sweep-demo.toml -o sweep-demo
  sudo uvmtrace sweep examples/sweep-demo.toml -o sweep-demo --resume
"""


@click.command("sweep", help=HELP)
@click.argument("plan", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="Directory for the recordings and the summary.")  # fmt: skip
@click.option("--resume", is_flag=True, help="Continue an interrupted sweep in DIR.")
@click.option("--no-summary", is_flag=True, help="Only record; `uvmtrace summarize DIR` later.")
def command(plan: Path, out: Path, resume: bool, no_summary: bool) -> int:
    outcome = run_sweep(plan, out, resume, echo=lambda line: click.echo(line, err=True))
    if outcome.interrupted:
        return 130
    if outcome.total == 0:
        raise UserError("no variant of the plan can run on this host (see the reasons above)")
    if no_summary or outcome.finished == len(outcome.failed):
        return 0 if not outcome.failed else 1
    click.echo("", err=True)
    try:  # the analysis packages: a recording-only host records, and summarizes elsewhere
        from uvmtrace.analysis.items import DEFAULT_MIN_ALLOC, DEFAULT_TOLERANCE
        from uvmtrace.cli.commands.summarize import summarize_to
    except ModuleNotFoundError as exc:
        click.echo(f"no summary here ({exc.name} is not installed): run `uvmtrace summarize "
                   f"{out}` where it is", err=True)  # fmt: skip
        return 0 if not outcome.failed else 1
    summarize_to([str(out)], None, out / "summary.parquet", None, out / "summary.html",
                 str(out / "summary.json"), DEFAULT_MIN_ALLOC, DEFAULT_TOLERANCE)  # fmt: skip
    who = invoking_owner()
    for name in ("summary.parquet", "summary.html", "summary.json"):
        give_to(out / name, who)
    click.echo(f"\nsummary: {out / 'summary.html'}, {out / 'summary.json'}, "
               f"{out / 'summary.parquet'}", err=True)  # fmt: skip
    return 0 if not outcome.failed else 1
