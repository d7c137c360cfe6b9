"""`uvmtrace demo-workload`: the demo's KV-cache sizer (example/kvsizer.py) as a subcommand."""

from __future__ import annotations

import click

from uvmtrace.example import kvsizer
from uvmtrace.recording.errors import UserError


@click.command(
    "demo-workload",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
    help="Size a KV cache from a free-memory signal, as inference servers do (--help for options)."
    "\n\n\b\nExample:\n  uvmtrace demo-workload --weights w.bin --weights-size 1G --signal sysinfo",
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args: tuple[str, ...]) -> int:
    try:
        cfg = kvsizer.config_from_args(list(args), prog="uvmtrace demo-workload")
        result = kvsizer.run(cfg)
    except kvsizer.KvSizerError as exc:
        raise UserError(str(exc)) from None
    click.echo(kvsizer.result_line(result))
    return 0
