"""The `uvmtrace` command: a click group assembled from one module per subcommand."""

from __future__ import annotations

import importlib
import os
import sys

import click

from uvmtrace.recording import UVMTRACE_VERSION
from uvmtrace.recording.errors import UserError

# Adding a subcommand = one module in cli/commands/ exposing `command`, plus one entry here
# (the name users type -> the module). A module is imported only when its command runs or help
# lists it: `record` and `doctor` must start on a recording host that has no analysis packages
# (polars, matplotlib), and every command starts faster without the others' imports.
COMMANDS = {
    "record": "record",
    "report": "report",
    "diff": "diff",
    "sweep": "sweep",
    "summarize": "summarize",
    "doctor": "doctor",
    "recover": "recover",
    "demo": "demo",
    "demo-workload": "demo_workload",
    "demo-image": "demo_image",
    "shim": "shim",
    "headroom": "headroom",
}

HELP = """Where unified memory goes, at kernel level: record a workload, then explain it.

\b
  uvmtrace record -o native.parquet -- python serve.py
  uvmtrace record -o docker.parquet -- docker run --rm img python serve.py
  uvmtrace diff native.parquet docker.parquet
  uvmtrace report docker.parquet --html report.html
  uvmtrace sweep plan.toml -o sweep-out      # variants x repeats, then summarize
  uvmtrace doctor
"""


class LazyGroup(click.Group):
    """Subcommands imported on first use (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        try:
            return importlib.import_module(f"uvmtrace.cli.commands.{module}").command
        except ModuleNotFoundError as exc:
            package = (exc.name or "").split(".")[0]
            if not package or package == "uvmtrace":
                raise
            return _unavailable(cmd_name, package)

    def invoke(self, ctx: click.Context) -> object:
        # Command modules import their heavy packages when they run (so `--help` starts fast):
        # a package missing then gets the same one line as a module that cannot be imported.
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            package = (exc.name or "").split(".")[0]
            if not package or package == "uvmtrace" or ctx.invoked_subcommand is None:
                raise
            raise UserError(f"`uvmtrace {ctx.invoked_subcommand}` {_needs(package)}") from None


def _needs(package: str) -> str:
    return f"needs the Python package {package}, not installed here (pip install {package})"


def _unavailable(name: str, package: str) -> click.Command:
    """A command whose module needs a package this host lacks (polars on a recording-only host):
    listed in help, and one line saying what to install when run."""
    why = _needs(package)

    def fail(**_: object) -> None:
        raise UserError(f"`uvmtrace {name}` {why}")

    return click.Command(
        name,
        callback=fail,
        help=f"Unavailable on this host: {why}.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
    )


@click.group(cls=LazyGroup, help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(UVMTRACE_VERSION, prog_name="uvmtrace")
def cli() -> None:
    pass


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
    except BrokenPipeError:
        # The reader went away (`uvmtrace report run.parquet | head -1`): it has what it wanted.
        # Point stdout at /dev/null so the interpreter's last flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
