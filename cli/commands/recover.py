"""`uvmtrace recover`: turn the spool of a killed recording into a valid recording."""

from __future__ import annotations

from pathlib import Path

import click

from uvmtrace.recording.errors import UserError


@click.command(
    "recover",
    help="Turn the spool left by a killed recording into a readable recording.\n\n"
    "\b\nExample:\n  uvmtrace recover run.parquet.spool -o run.parquet",
)
@click.argument("spool", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Recording to write.")
def command(spool: Path, output: Path | None) -> None:
    from uvmtrace.recording.recover import recover  # pyarrow: only when a spool is recovered
    from uvmtrace.tracer.launch import invoking_owner

    if output is None:
        if not spool.name.endswith(".spool"):
            raise UserError("give the output file with -o")
        output = spool.with_name(spool.name[: -len(".spool")])
    rows, torn = recover(spool, output, owner=invoking_owner())
    msg = f"recovered {rows} events into {output}"
    if torn:
        msg += f" ({torn} bytes of a batch cut off mid-write were dropped)"
    click.echo(msg)
