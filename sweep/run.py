"""`uvmtrace sweep`: every variant of a plan, repeated, each run recorded by `uvmtrace record`.

Layout (a partitioned dataset for polars, DuckDB or Spark):

  DIR/sweep.json                         the resolved plan, variant order, skipped variants
  DIR/variant=NAME/run=I/recording.parquet
  DIR/variant=NAME/run=I/run.json        written when the run is complete (exit code, seconds)
  DIR/summary.{parquet,json,html}        `uvmtrace summarize DIR`

Runs are interleaved (repeat 1 of every variant, then repeat 2, ...) so that drift on a shared
machine spreads over all variants. A run without run.json is unfinished: Ctrl-C removes it and
`--resume` runs it again; finished runs are kept. A variant whose runtime this host lacks is
skipped, with the reason, in sweep.json and in the summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvmtrace.recording.errors import UserError
from uvmtrace.recording.safefs import give_to
from uvmtrace.sweep.plan import Plan, Variant, load_plan, run_argv, why_unavailable
from uvmtrace.tracer.launch import invoking_owner

STATE = "sweep.json"
RUN_DONE = "run.json"
RECORDING = "recording.parquet"
STATE_VERSION = 1
INTERRUPT_GRACE_S = 60.0  # record writes its file after the command stops; then it is killed


@dataclass
class SweepOutcome:
    out: Path
    finished: int  # runs complete after this invocation (including earlier ones)
    total: int
    skipped: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False


def run_dir(out: Path, variant: str, run: int) -> Path:
    return out / f"variant={variant}" / f"run={run}"


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    give_to(tmp, invoking_owner())
    os.replace(tmp, path)  # a reader never sees half a file


def _real_dir(path: Path) -> None:
    if path.is_symlink():
        raise UserError(f"refusing to use {path}: it is a symlink")
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    give_to(path, invoking_owner())


def _prepare_out(out: Path, plan: Plan, plan_path: Path, resume: bool) -> dict[str, Any]:
    state_path = out / STATE
    if resume:
        if not state_path.is_file():
            raise UserError(f"--resume: {out} holds no sweep ({STATE} is missing)")
        state = json.loads(state_path.read_text())
        if state.get("plan") != plan.as_dict():
            raise UserError(
                f"--resume: the plan differs from the one {out} was started with "
                f"({state.get('plan_file')}); use another -o for a new sweep"
            )
        return state
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a sweep" if state_path.is_file() else "files"
        raise UserError(
            f"{out} already holds {what}; continue it with --resume, or give another -o"
        )
    _real_dir(out)
    state = {
        "version": STATE_VERSION,
        "plan_file": str(plan_path),
        "plan": plan.as_dict(),
        "variants": [{"name": v.name, "runtime": v.runtime} for v in plan.variants],
        "started_wall": time.time(),
    }
    shutil.copyfile(plan_path, out / "plan.toml")
    give_to(out / "plan.toml", invoking_owner())
    _write_json(state_path, state)
    return state


def drop_caches() -> None:
    """Write back dirty pages, then drop the clean page cache, dentries and inodes."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def warm(path: str) -> None:
    """Read a file once so that all of it is in the page cache (as after a download)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while os.read(fd, 8 << 20):
            pass
    finally:
        os.close(fd)


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Sweep:
    def __init__(
        self,
        plan: Plan,
        out: Path,
        echo: Callable[[str], None],
    ) -> None:
        self.plan = plan
        self.out = out
        self.echo = echo
        self.child: subprocess.Popen[bytes] | None = None

    def order(self, available: list[Variant]) -> list[tuple[Variant, int]]:
        """Interleaved: repeat 1 of each variant, then repeat 2, ..."""
        return [(v, i) for i in range(1, self.plan.repeats + 1) for v in available]

    def _between(self, v: Variant) -> None:
        if self.plan.between == "drop-caches":
            try:
                drop_caches()
            except OSError as exc:
                raise UserError(f"cannot drop caches between runs: {exc.strerror}") from None
        for path in v.warm:
            try:
                warm(path)
            except OSError as exc:
                raise UserError(f"variant {v.name}: cannot warm {path}: {exc.strerror}") from None
        if self.plan.prepare:
            self._call(self.plan.prepare, "prepare")

    def _call(self, argv: list[str], what: str) -> None:
        try:
            r = subprocess.run(argv, stdout=sys.stderr)
        except OSError as exc:
            raise UserError(f"{what} command {argv[0]}: {exc.strerror}") from None
        if r.returncode != 0:
            raise UserError(f"{what} command failed (exit {r.returncode}): {' '.join(argv)}")

    def record_one(self, v: Variant, run: int) -> tuple[int, float]:
        """Record one run; returns (record's exit code, seconds). KeyboardInterrupt propagates
        after record has finished its file."""
        where = run_dir(self.out, v.name, run)
        if where.exists():
            shutil.rmtree(where)  # an unfinished run from an interrupted sweep
        where.mkdir(mode=0o755, parents=True)
        for d in (where.parent, where):
            give_to(d, invoking_owner())
        record_opts, command, env = run_argv(v, run)
        argv = [sys.executable, "-m", "uvmtrace.cli", "record", "-q", *self.plan.record,
                *record_opts, "-o", str(where / RECORDING), "--", *command]  # fmt: skip
        log = open(where / "output.log", "wb")  # noqa: SIM115 - closed below, after the child
        give_to(where / "output.log", invoking_owner())
        t = time.monotonic()
        try:
            self.child = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
            )
            try:
                code = self.child.wait()
            except KeyboardInterrupt:
                self._stop_child()
                raise
        finally:
            self.child = None
            log.close()
        return code, time.monotonic() - t

    def _stop_child(self) -> None:
        """After Ctrl-C: record got the terminal's SIGINT too (one process group) and stops the
        command; when only we got it (kill -INT), pass it on. Then let record finish its file."""
        child = self.child
        if child is None:
            return
        try:
            child.wait(timeout=1.0)
            return
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=INTERRUPT_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def run(self, plan_path: Path, resume: bool) -> SweepOutcome:
        plan = self.plan
        state = _prepare_out(self.out, plan, plan_path, resume)
        started = time.monotonic()
        if plan.setup:
            self.echo(f"setup: {' '.join(plan.setup)}")
            self._call(plan.setup, "setup")
        skipped: dict[str, str] = {}
        for v in plan.variants:
            why = why_unavailable(v)
            if why is not None:
                skipped[v.name] = why
                self.echo(f"variant {v.name}: skipped ({why})")
        for entry in state["variants"]:
            entry["skipped"] = skipped.get(entry["name"])
        _write_json(self.out / STATE, state)
        available = [v for v in plan.variants if v.name not in skipped]
        todo = self.order(available)
        total = len(todo)
        done = {(v.name, i) for v, i in todo if (run_dir(self.out, v.name, i) / RUN_DONE).is_file()}
        outcome = SweepOutcome(self.out, len(done), total, skipped)
        if done:
            self.echo(f"resuming: {len(done)} of {total} runs already recorded")
        seconds: dict[str, list[float]] = {}
        for n, (v, i) in enumerate(todo, 1):
            if (v.name, i) in done:
                continue
            remaining = [w for w, j in todo[n - 1 :] if (w.name, j) not in done]
            elapsed = time.monotonic() - started
            self.echo(
                f"[run {n}/{total}] {v.name}, repeat {i}/{plan.repeats} - elapsed "
                f"{_fmt_s(elapsed)}, ETA {self._eta(remaining, seconds)}"
            )
            try:
                self._between(v)
                code, secs = self.record_one(v, i)
            except KeyboardInterrupt:
                shutil.rmtree(run_dir(self.out, v.name, i), ignore_errors=True)
                outcome.interrupted = True
                self.echo(
                    f"interrupted: {outcome.finished} of {total} runs kept; continue with --resume"
                )
                return outcome
            seconds.setdefault(v.name, []).append(secs)
            where = run_dir(self.out, v.name, i)
            recorded = (where / RECORDING).is_file()
            _write_json(
                where / RUN_DONE,
                {"variant": v.name, "run": i, "record_exit_code": code,
                 "seconds": round(secs, 3), "recorded": recorded},
            )  # fmt: skip
            outcome.finished += 1
            if not recorded:
                outcome.failed.append(f"{v.name} run {i}")
                tail = (where / "output.log").read_text(errors="replace").strip().splitlines()
                self.echo(f"  no recording (record exit {code}): {(tail or [''])[-1][:200]}")
            else:
                note = "" if code == 0 else f", command exited {code}"
                self.echo(f"  recorded in {secs:.1f} s{note}")
        self.echo(f"{outcome.finished} of {total} runs in {_fmt_s(time.monotonic() - started)}")
        return outcome

    def _eta(self, remaining: list[Variant], seconds: dict[str, list[float]]) -> str:
        every = [s for v in seconds.values() for s in v]
        if not every:
            return "unknown"
        mean = sum(every) / len(every)

        def expected(v: Variant) -> float:
            own = seconds.get(v.name)
            return sum(own) / len(own) if own else mean

        return _fmt_s(sum(expected(v) for v in remaining))


def run_sweep(
    plan_path: Path, out: Path, resume: bool, echo: Callable[[str], None]
) -> SweepOutcome:
    plan = load_plan(plan_path, out)  # a bad plan is reported first, root or not
    if os.geteuid() != 0:
        raise UserError("uvmtrace sweep records with eBPF and needs root; run it with sudo")
    return Sweep(plan, out, echo).run(plan_path, resume)
