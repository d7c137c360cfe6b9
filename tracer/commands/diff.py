"""`uvmtrace diff` (not built yet)."""

from __future__ import annotations

import click

from uvmtrace.recording.errors import UserError


@click.command(
    "diff",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    help="Explain why B got less memory than A (e.g. native vs Docker).\n\n\b\nExample:\n  uvmtrace diff native.parquet docker.parquet",
)
def command() -> None:
    raise UserError("'uvmtrace diff' is not built yet", exit_code=3)
