"""`uvmtrace doctor` (not built yet)."""

from __future__ import annotations

import click

from uvmtrace.recording.errors import UserError


@click.command("doctor", help="Check what this host can trace, and what is missing.")
def command() -> None:
    raise UserError("'uvmtrace doctor' is not built yet", exit_code=3)
