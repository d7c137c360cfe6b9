"""`uvmtrace report` (not built yet)."""

from __future__ import annotations

import click

from uvmtrace.recording.errors import UserError


@click.command(
    "report",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    help="Explain one recording: where the bytes went and what sized the KV cache.\n\n\b\nExample:\n  uvmtrace report run.parquet --html report.html",
)
def command() -> None:
    raise UserError("'uvmtrace report' is not built yet", exit_code=3)
