"""`uvmtrace record`: run a command under the probes and the shim; write one recording."""

from __future__ import annotations

from pathlib import Path

import click

from uvmtrace.probes.bpfsource import RAW_RING_PAGES, RING_PAGES
from uvmtrace.recording.errors import UserError

HELP = """Run CMD while tracing its memory; write one Parquet recording.

The exit code is the command's. Ctrl-C goes to the command; the file is still complete.

With --pid, --container or --cgroup instead of CMD, record what is already running (and the
children it forks later) from now on, for --duration seconds, until Ctrl-C or until the targets
exit; the starting state is a snapshot taken at attach.

\b
Examples:
  sudo uvmtrace record -o native.parquet -- python serve.py
  sudo uvmtrace record -o docker.parquet -- docker run --rm --memory=8g img python serve.py
  sudo uvmtrace record -o live.parquet --container vllm --duration 60
"""


@click.command("record", help=HELP)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, dir_okay=False, readable=False),
    default=Path("uvmtrace.parquet"),
    show_default=True, help="Recording to write.",
)  # fmt: skip
@click.option(
    "--interval",
    type=click.FloatRange(0.01, 60),
    default=0.1,
    show_default=True,
    help="Seconds between samples of /proc/meminfo, memory.stat and NVML.",
)
@click.option("--raw", is_flag=True, help="Keep every fault and charge event (no aggregation).")
@click.option(
    "--ring-pages",
    type=click.IntRange(1, 1 << 20),
    default=None,
    help=f"Pages per BPF ring buffer (a power of two; default {RING_PAGES}, {RAW_RING_PAGES} "
    "with --raw).",
)
@click.option("--no-shim", is_flag=True, help="Do not preload the CUDA/NVML/libc shim.")
@click.option(
    "--inject/--no-inject",
    default=None,
    help="Preload the shim inside a `docker run`/`podman run` container (default: on).",
)
@click.option("--as-root", is_flag=True, help="Under sudo, run the command as root, not as you.")
@click.option(
    "--no-cgroup",
    is_flag=True,
    help="Leave the command in uvmtrace's memory cgroup instead of a fresh child one.",
)
@click.option(
    "--watch-cgroups",
    is_flag=True,
    help="Trace every cgroup created while recording (on by default for docker run; "
    "use it when a script starts containers).",
)
@click.option(
    "--pid", "pids", type=click.IntRange(1), multiple=True,
    help="Record this running process and its children (repeatable).",
)  # fmt: skip
@click.option(
    "--container", "containers", multiple=True, metavar="NAME_OR_ID",
    help="Record this running Docker or Podman container (repeatable).",
)  # fmt: skip
@click.option(
    "--cgroup", "cgroup_paths", multiple=True, metavar="PATH",
    help="Record this memory cgroup (a path under /sys/fs/cgroup or relative to the memory "
    "hierarchy; repeatable).",
)  # fmt: skip
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
    help="With --pid/--container/--cgroup: stop after this long (default: Ctrl-C or exit).",
)  # fmt: skip
@click.option(
    "--memory-limit",
    default=None,
    help="A memory limit (e.g. 2G) on the command's own cgroup, as `docker run --memory` sets.",
)
@click.option("--force", is_flag=True, help="Overwrite the recording if it exists.")
@click.option(
    "--reclaim-before-sizing",
    is_flag=True,
    help="Before each sizing query (sysinfo; cuMemGetInfo and NVML on a unified-memory GPU), "
    "drop the clean page cache the command brought in, then let the query answer.",
)
@click.option("-q", "--quiet", is_flag=True, help="No live status line.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(
    output: Path,
    interval: float,
    raw: bool,
    ring_pages: int | None,
    no_shim: bool,
    inject: bool | None,
    as_root: bool,
    no_cgroup: bool,
    watch_cgroups: bool,
    pids: tuple[int, ...],
    containers: tuple[str, ...],
    cgroup_paths: tuple[str, ...],
    duration: float | None,
    memory_limit: str | None,
    force: bool,
    reclaim_before_sizing: bool,
    quiet: bool,
    command: tuple[str, ...],
) -> int:
    # Imported here: `uvmtrace --help` lists this command without loading pyarrow and BCC's side.
    from uvmtrace.tracer import heap

    heap.release_freed_memory()  # first: before pyarrow loads
    from uvmtrace.recording.schema import split_lost
    from uvmtrace.tracer.attach import AttachRequest, record_running
    from uvmtrace.tracer.session import Options, record

    attach = AttachRequest(pids, containers, cgroup_paths, duration)
    if duration is not None and not attach:
        raise UserError("--duration applies to --pid/--container/--cgroup recordings")
    if memory_limit is not None and attach:
        raise UserError("--memory-limit applies to a command record starts, not to --pid/...")
    if reclaim_before_sizing and attach:
        raise UserError("--reclaim-before-sizing needs a command started under the shim")
    opts = Options(
        output=output,
        command=list(command),
        interval_s=interval,
        raw=raw,
        ringbuf_pages=ring_pages,
        shim=not no_shim,
        inject=inject,
        as_root=as_root,
        quiet=quiet,
        own_cgroup=not no_cgroup,
        watch_cgroups=watch_cgroups,
        memory_limit=_size(memory_limit),
        force=force,
        reclaim_before_sizing=reclaim_before_sizing,
    )
    outcome = record_running(opts, attach) if attach else record(opts)
    if outcome.failure is not None:  # the command ran on; what was recorded is in the spool
        click.echo(
            f"uvmtrace: error: {outcome.failure}; the command ran to its end (exit "
            f"{outcome.exit_code}); {outcome.rows:,} events recorded until then are in "
            f"{outcome.spool}: make room, then run `uvmtrace recover {outcome.spool}`",
            err=True,
        )
        return outcome.exit_code
    if not quiet:
        lost, nested = split_lost(outcome.lost)  # the report's meaning of "lost"
        skipped = sum(nested.values())
        click.echo(
            f"uvmtrace: wrote {outcome.path} ({outcome.rows:,} events, {sum(lost.values()):,} "
            f"lost{f', {skipped:,} host-wide updates skipped by the kernel' if skipped else ''}); "
            + (f"command exited {outcome.exit_code}" if command else str(outcome.ended)),
            err=True,
        )
    return outcome.exit_code


def _size(text: str | None) -> int | None:
    if text is None:
        return None
    from uvmtrace.example.kvsizer import KvSizerError, parse_size

    try:
        return parse_size(text)
    except KvSizerError as exc:
        raise UserError(f"--memory-limit: {exc}") from None
