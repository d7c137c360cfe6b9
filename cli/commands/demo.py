"""`uvmtrace demo`: the built-in scenario, set-up included (see example/run.py)."""

from __future__ import annotations

from pathlib import Path

import click

from uvmtrace.example.kvsizer import KvSizerError, parse_size
from uvmtrace.example.run import DemoOptions, run_demo
from uvmtrace.recording.errors import UserError

HELP = """Record a KV-cache sizer natively and in Docker, then explain the difference.

Builds a small image offline (busybox + the weights file), records the workload twice with
`uvmtrace record` (native: the host's copy of the weights, in the page cache; Docker: the
image's copy, not cached), runs `uvmtrace diff` and writes OUT/native.parquet,
OUT/docker.parquet, OUT/report.html and OUT/summary.json (per run: KV bytes, the signal, what
it answered, what was reclaimed). With --reclaim-before-sizing each run is recorded again with
the fix, side by side, in 3 interleaved rounds (--repeats): each variant is judged by its median
run, so that what the rest of the host does between runs falls on all of them alike. Without a
Docker daemon: two native runs, page cache warm vs cold. Needs root.

\b
Example:
  sudo uvmtrace demo
  sudo uvmtrace demo --quick --out /tmp/demo
"""


def _size(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return parse_size(value)
    except KvSizerError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("demo", help=HELP)
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo"), show_default=True,
              help="Directory for the recordings and the report.")  # fmt: skip
@click.option("--weights-size", default="1G", show_default=True, callback=_size,
              help="Size of the weights file (e.g. 256M, 1G).")  # fmt: skip
@click.option("--quick", is_flag=True, help="256 MiB of weights, a ~1 GiB KV cache (for CI).")
@click.option("--load", type=click.Choice(["read", "mmap"]), default="read", show_default=True,
              help="How the workload loads its weights.")  # fmt: skip
@click.option("--no-docker", is_flag=True, help="Two native runs (warm vs cold page cache).")
@click.option("--container-memory", default=None,
              help="docker run --memory for the container (default: no limit).")  # fmt: skip
@click.option("--reclaim-before-sizing", is_flag=True,
              help="Also record each run with the fix; KV sizes with and without it.")  # fmt: skip
@click.option("--repeats", type=click.IntRange(1, 50), default=None,
              help="Rounds of all runs, interleaved; medians compared "
              "[default: 3 with --reclaim-before-sizing, else 1].")  # fmt: skip
def command(
    out: Path,
    weights_size: int,
    quick: bool,
    load: str,
    no_docker: bool,
    container_memory: str | None,
    reclaim_before_sizing: bool,
    repeats: int | None,
) -> int:
    if quick and weights_size == parse_size("1G"):
        weights_size = parse_size("256M")
    if weights_size < parse_size("16M"):
        raise UserError("--weights-size must be at least 16M")
    outcome = run_demo(
        DemoOptions(
            out=out,
            weights_size=weights_size,
            quick=quick,
            docker=not no_docker,
            load=load,
            container_memory=container_memory,
            reclaim_before_sizing=reclaim_before_sizing,
            repeats=repeats,
            echo=click.echo,
        )
    )
    if outcome.report is not None:
        click.echo(f"\nreport: {outcome.report}")
    else:
        click.echo("\nno report: `uvmtrace diff` did not run (see above)")
    return 0
