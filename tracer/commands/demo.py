"""`uvmtrace demo` (not built yet)."""

from __future__ import annotations

import click

from uvmtrace.recording.errors import UserError


@click.command(
    "demo",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    help="Build a small image, record a KV-cache sizer natively and in Docker, diff them.\n\n\b\nExample:\n  uvmtrace demo",
)
def command() -> None:
    raise UserError("'uvmtrace demo' is not built yet", exit_code=3)
