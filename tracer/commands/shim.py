"""`uvmtrace shim` (not built yet)."""

from __future__ import annotations

import click

from uvmtrace.recording.errors import UserError


@click.command(
    "shim",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    help="Build the LD_PRELOAD shim or run a command under it.\n\n\b\nExample:\n  uvmtrace shim build",
)
def command() -> None:
    raise UserError("'uvmtrace shim' is not built yet", exit_code=3)
