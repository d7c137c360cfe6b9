"""`uvmtrace record` (not built yet)."""

from __future__ import annotations

import click

from uvmtrace.recording.errors import UserError


@click.command(
    "record",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    help="Run CMD while tracing its memory; write one Parquet recording.\n\n\b\nExample:\n  uvmtrace record -o run.parquet -- python serve.py",
)
def command() -> None:
    raise UserError("'uvmtrace record' is not built yet", exit_code=3)
