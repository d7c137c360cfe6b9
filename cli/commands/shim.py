"""`uvmtrace shim`: build the LD_PRELOAD shim, say where it is, or run a command under it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from uvmtrace.recording.errors import UserError
from uvmtrace.recording.safefs import check_writable_target
from uvmtrace.shim.build import build_shim, glibc_needed, shim_path
from uvmtrace.shim.reclaim_requests import (
    HOST_QUERIES,
    UNIFIED_QUERIES,
    ReclaimRequests,
    reclaim_env,
)
from uvmtrace.shim.rundir import make_run_dir, shim_env

if TYPE_CHECKING:
    from uvmtrace.tracer.reclaim import Reclaimer
POLL_S = 0.5


@click.group(
    "shim",
    help="The LD_PRELOAD shim that records CUDA / NVML / sysinfo memory calls.\n\n"
    "\b\nExample:\n  uvmtrace shim build\n  uvmtrace shim run -o cuda.parquet -- python train.py",
)
def command() -> None:
    pass


@command.command("build", help="Compile the shim (cached by source hash) and print its path.")
@click.option("--force", is_flag=True, help="Rebuild even if a cached build exists.")
def build(force: bool) -> None:
    lib = build_shim(force=force)
    click.echo(str(lib))
    needed = glibc_needed(lib)
    click.echo(
        f"needs {needed or 'no versioned glibc symbols'}: loads in containers whose glibc is "
        f"{needed.removeprefix('GLIBC_') if needed else 'any'} or newer",
        err=True,
    )


@command.command("path", help="Print where the shim for this source is (built or not).")
def path() -> None:
    lib = shim_path()
    click.echo(str(lib))
    if not lib.exists():
        click.echo("(not built yet: uvmtrace shim build)", err=True)


@command.command(
    "run",
    context_settings={"ignore_unknown_options": True},
    help="Run CMD under the shim; write its CUDA stream to a Parquet recording.\n\n"
    "\b\nExample:\n  uvmtrace shim run -o cuda.parquet -- python serve.py",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("cuda.parquet"),
    show_default=True,
)
@click.option(
    "--reclaim-before-sizing",
    is_flag=True,
    help="Before each sizing query, reclaim the clean page cache of the command's cgroup "
    "(cgroup v2 memory.reclaim; `uvmtrace record` knows the files and works on v1 too).",
)
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def run(output: Path, reclaim_before_sizing: bool, cmd: tuple[str, ...]) -> int:
    # Imported here: the decoder and writer pull in numpy and Parquet machinery the other
    # subcommands (and `--help`) never need.
    from uvmtrace.recording.writer import write_recording
    from uvmtrace.shim.decode import ShimDecoder

    check_writable_target(output)
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise UserError(f"command not found: {cmd[0]}", exit_code=127)
    lib = build_shim()
    parent = Path(tempfile.mkdtemp(prefix="uvmtrace-"))
    try:
        run_dir = make_run_dir(parent)
        decoder = ShimDecoder(run_dir)
        batches = []
        env = shim_env(run_dir, lib=lib)
        reclaimer = _reclaimer(run_dir, env) if reclaim_before_sizing else None
        started = time.monotonic_ns()
        proc = subprocess.Popen(list(cmd), env=env)
        try:
            while proc.poll() is None:
                batches += decoder.poll()
                if reclaimer is None:
                    time.sleep(POLL_S)
                elif reclaimer.requests.wait(POLL_S):  # the shim waits in a sizing query
                    batches += reclaimer.serve()
        except KeyboardInterrupt:
            # The child got the same SIGINT from the terminal; give it time to exit cleanly.
            proc.send_signal(signal.SIGINT)
            proc.wait()
        batches += decoder.poll() + decoder.close()
        code = proc.returncode
        stats = decoder.stats()
        extra = {}
        if reclaimer is not None:
            batches += reclaimer.serve()
            extra["reclaim_before_sizing"] = reclaimer.metadata(HOST_QUERIES + UNIFIED_QUERIES)
            reclaimer.requests.close()
        write_recording(
            output,
            batches,
            {
                "command": list(cmd),
                "exit_code": code,
                "shim": {"library": str(lib), "glibc_needed": glibc_needed(lib), **stats},
                "anchor": {"monotonic_ns": started, "wall_ns": time.time_ns()},
                **extra,
            },
        )
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    torn = f", {stats['torn']} torn" if stats["torn"] else ""
    click.echo(
        f"uvmtrace: {stats['records']} CUDA/NVML/sysinfo calls from {stats['files']} "
        f"process(es){torn} -> {output}",
        err=True,
    )
    return code if code >= 0 else 128 - code


def _reclaimer(run_dir: Path, env: dict[str, str]) -> Reclaimer:
    """No probes here, so no list of files: the reclaimer asks the cgroup (v2 memory.reclaim).
    Every sizing query asks: without a recorder's GPU facts, cuMemGetInfo and NVML too."""
    from uvmtrace.tracer.reclaim import Reclaimer

    env.update(reclaim_env(HOST_QUERIES + UNIFIED_QUERIES))
    return Reclaimer(ReclaimRequests(run_dir), tracer=None)
