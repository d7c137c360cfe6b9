"""The `uvmtrace` command line: help with an example for every subcommand, --version, and bad
input answered in one line with a non-zero exit code."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import click
import pytest

from uvmtrace.cli.main import cli

COMMANDS = cli.list_commands(click.Context(cli))  # the names users type (modules may differ)


def uvmtrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uvmtrace.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_top_level_help_opens_with_the_workflow() -> None:
    proc = uvmtrace("--help")
    assert proc.returncode == 0
    assert "uvmtrace record -o" in proc.stdout and "uvmtrace diff" in proc.stdout
    for name in COMMANDS:
        assert name in proc.stdout, f"{name} missing from the command list"


@pytest.mark.parametrize("name", COMMANDS)
def test_each_subcommand_help_has_an_example(name: str) -> None:
    proc = uvmtrace(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Example" in proc.stdout, proc.stdout
    assert f"uvmtrace {name}" in proc.stdout.split("Example", 1)[1], proc.stdout


def test_version_is_the_installed_package_version() -> None:
    proc = uvmtrace("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"uvmtrace, version {version('uvmtrace')}"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("doctor", "--no-such-option"), "No such option '--no-such-option'"),
        (("no-such-command",), "No such command 'no-such-command'"),
        (("recover",), "Missing argument 'SPOOL'"),
    ],
)
def test_bad_usage_is_one_line_on_stderr_with_exit_code_2(args: tuple[str, ...], says: str) -> None:
    proc = uvmtrace(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("uvmtrace: error: ") and says in lines[0]
    assert "--help" in lines[0]  # says where to look


def test_a_user_error_is_one_line_not_a_traceback(tmp_path) -> None:
    proc = uvmtrace("recover", str(tmp_path / "nothing.spool"), "-o", str(tmp_path / "r.parquet"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("uvmtrace: error: ")


# A recording host needs only what recording needs: no analysis packages.
NO_ANALYSIS = (
    "import sys\n"
    "for m in ('polars', 'matplotlib'):\n"
    "    sys.modules[m] = None  # import fails as if not installed\n"
    "from uvmtrace.cli.main import main\n"
    "main(sys.argv[1:])\n"
)


def without_analysis_packages(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_ANALYSIS, *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("name", ["record", "doctor", "recover", "shim", "sweep", "demo-image"])
def test_recording_commands_start_without_polars_or_matplotlib(name: str) -> None:
    proc = without_analysis_packages(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"uvmtrace {name}" in proc.stdout


def test_analysis_commands_without_polars_say_what_to_install() -> None:
    listing = without_analysis_packages("--help")
    assert listing.returncode == 0, listing.stderr
    assert "report" in listing.stdout and "record" in listing.stdout
    proc = without_analysis_packages("report", "run.parquet")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "uvmtrace: error: `uvmtrace report` needs the Python package polars, "
        "not installed here (pip install polars)"
    )
