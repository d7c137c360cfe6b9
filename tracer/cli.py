"""The `uvmtrace` command: a click group assembled from one module per subcommand."""

from __future__ import annotations

import importlib
import sys

import click

from uvmtrace.recording.errors import UserError
from uvmtrace.tracer import __version__

# Adding a subcommand = one module in tracer/commands/ exposing `command`, plus one entry here.
COMMANDS = (
    "record",
    "report",
    "diff",
    "doctor",
    "recover",
    "demo",
    "demo_workload",
    "shim",
    "headroom",
)

HELP = """Where unified memory goes, at kernel level: record a workload, then explain it.

\b
  uvmtrace record -o native.parquet -- python serve.py
  uvmtrace record -o docker.parquet -- docker run --rm img python serve.py
  uvmtrace diff native.parquet docker.parquet
  uvmtrace report docker.parquet --html report.html
  uvmtrace doctor
"""


@click.group(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="uvmtrace")
def cli() -> None:
    pass


for _name in COMMANDS:
    cli.add_command(importlib.import_module(f"uvmtrace.tracer.commands.{_name}").command)


def main(argv: list[str] | None = None) -> None:
    try:
        rv = cli.main(args=argv, prog_name="uvmtrace", standalone_mode=False)
    except UserError as exc:
        click.echo(f"uvmtrace: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("uvmtrace: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # One line, like every other error: what was wrong and where the help is.
        where = exc.ctx.command_path if exc.ctx else "uvmtrace"
        message = exc.format_message().rstrip(".")
        click.echo(f"uvmtrace: error: {message} (see '{where} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
