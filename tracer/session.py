"""One recording session: probes + shim + samplers around one command, into one Parquet file.

Order matters: the probes are attached before the command exists; the command is forked and held
at a gate until its pid is in the probes' target map; only then does it exec. Everything the
sources produce goes through one writer (spooled), so a crash or Ctrl-C loses nothing recorded.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvmtrace.host import cgroupfs
from uvmtrace.probes import bpfsource
from uvmtrace.recording.errors import UserError
from uvmtrace.recording.safefs import check_writable_target, give_to, make_private_dir
from uvmtrace.recording.schema import make_batch
from uvmtrace.recording.writer import RecordingWriter
from uvmtrace.tracer import containers, heap
from uvmtrace.tracer.hostinfo import gpu_info, host_info
from uvmtrace.tracer.launch import (
    Launched,
    RunAs,
    exec_error,
    exit_code,
    foreground_terminal,
    invoking_user,
    launch,
    resolve_command,
    set_foreground,
)
from uvmtrace.tracer.leftovers import clear_stale_cgroups, prepare_output
from uvmtrace.tracer.logs import LogScanner
from uvmtrace.tracer.output_pump import OutputPump
from uvmtrace.tracer.output_tee import OutputTee
from uvmtrace.tracer.samplers import Nvml, Sampler, monotonic_ns
from uvmtrace.tracer.status import StatusLine

if TYPE_CHECKING:  # imported lazily at run time: a host without BCC still records the rest
    from uvmtrace.probes.kernel_tracer import KernelTracer
    from uvmtrace.shim.announce import PidAnnouncements
    from uvmtrace.shim.decode import ShimDecoder
    from uvmtrace.shim.reclaim_requests import ReclaimRequests
    from uvmtrace.tracer.reclaim import Reclaimer
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Stops that come from the terminal (^Z, reading or setting it from the background): a shell
# regains the terminal then; a plain SIGSTOP (kill -STOP) pauses the command and we record on.
TERMINAL_STOPS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
SHIM_POLL_S = 0.25  # how often the shim's record files are read
STATUS_EVERY_S = 0.5  # how often the status line is redrawn


class Interrupted(Exception):
    """A signal arrived before the command started: stop with a complete, empty-handed file."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Options:
    output: Path
    command: list[str]
    interval_s: float = 0.1
    raw: bool = False
    shim: bool = True
    inject: bool | None = None  # None: on for docker/podman run
    as_root: bool = False
    quiet: bool = False
    own_cgroup: bool = True
    watch_cgroups: bool = False  # follow every cgroup created while recording (not only docker's)
    ringbuf_pages: int | None = None  # per ring buffer; None: bpfsource's defaults
    memory_limit: int | None = None  # bytes: the limit of the command's own memory cgroup
    force: bool = False  # overwrite an existing recording
    reclaim_before_sizing: bool = False  # drop the workload's clean page cache before it sizes


@dataclass
class Outcome:
    exit_code: int
    path: Path
    rows: int
    lost: dict[str, int] = field(default_factory=dict)
    ended: str | None = None  # why a recording of running targets ended
    failure: str | None = None  # the recording could not be written; what was is in `spool`
    spool: Path | None = None


def record(opts: Options) -> Outcome:
    if not opts.command:
        raise UserError("no command given; usage: uvmtrace record -o run.parquet -- CMD ARGS...")
    if os.geteuid() != 0:
        raise UserError(
            "uvmtrace record needs root for eBPF; run it with sudo (the command still runs as you)"
        )
    if opts.ringbuf_pages:  # checked before the command starts, as the probes will
        bpfsource.check_ring_pages(opts.ringbuf_pages)
    if opts.reclaim_before_sizing and not opts.shim:
        raise UserError("--reclaim-before-sizing needs the shim (it waits in the sizing query)")
    check_writable_target(opts.output)
    session = Session(opts)
    session.cleanup = prepare_output(opts.output, force=opts.force)
    if session.hierarchy is not None:
        session.cleanup += clear_stale_cgroups(session.hierarchy)
    return session.run()


class Session:
    def __init__(self, opts: Options) -> None:
        heap.release_freed_memory()  # the recorder's RSS stays what the rows in flight need
        self.opts = opts
        self.run_as: RunAs | None = None if opts.as_root else invoking_user()
        self.owner = (self.run_as.uid, self.run_as.gid) if self.run_as else None
        self.hierarchy = cgroupfs.memory_hierarchy()
        self.not_traced: list[dict[str, str]] = []
        self.cleanup: list[str] = []  # what earlier recordings left and we cleaned up
        self.meta: dict[str, Any] = {}
        self.signals_seen: list[int] = []
        self.child_pid: int | None = None
        self.terminal: int | None = None  # the terminal whose foreground the command holds
        self.terminal_sizes: list[bytes] = []  # its output terminals' sizes, last seen
        self.container: containers.ContainerRun | None = None
        self.waiter: subprocess.Popen[str] | None = None  # `docker wait` of a detached container
        self.announcements: PidAnnouncements | None = None  # with a shim
        self.reclaim_requests: ReclaimRequests | None = None  # with --reclaim-before-sizing
        self.reclaimer: Reclaimer | None = None
        self.reclaim_queries: tuple[str, ...] = ()
        self.command = list(opts.command)
        self.env = dict(os.environ)
        if self.run_as is not None:  # the command runs as that user: it is not under sudo
            for var in ("SUDO_COMMAND", "SUDO_USER", "SUDO_UID", "SUDO_GID"):
                self.env.pop(var, None)

    # ---- set-up -------------------------------------------------------------------------
    def _work_dir(self) -> Path:
        # Next to the output: same filesystem as the spool, no shared /tmp involved.
        # Absolute: the shim's run directory must hold wherever the command cds, and a bind mount
        # takes no relative path.
        out = self.opts.output.absolute()
        work = make_private_dir(out.with_name(f".{out.name}.uvmtrace"))
        if self._other_uids_write():
            os.chmod(work, 0o711)  # traversable, not listable: the shim's run dir lies inside
        return work

    def _cidfile_dir(self, work: Path) -> Path:
        """Where a container runtime writes the --cidfile we add. Its CLI runs as the command's
        user: under sudo that is a directory of theirs inside the work dir (root's)."""
        if self.run_as is None or containers.detect(self.command) is None:
            return work
        path = make_private_dir(work / "cid")
        give_to(path, self.owner)
        return path

    def _other_uids_write(self) -> bool:
        """Whether processes of another uid (sudo's user, a container's user) write shim files."""
        return self.run_as is not None or containers.detect(self.command) is not None

    def _start_shim(self, work: Path) -> tuple[ShimDecoder | None, Path | None, Path | None]:
        if not self.opts.shim:
            self.not_traced.append({"what": "CUDA/NVML/libc calls", "why": "--no-shim"})
            return None, None, None
        try:
            from uvmtrace.shim.announce import PidAnnouncements
            from uvmtrace.shim.build import build_shim
            from uvmtrace.shim.decode import ShimDecoder
            from uvmtrace.shim.rundir import load_problem, make_run_dir, shim_env
        except ImportError as exc:
            self.not_traced.append({"what": "CUDA/NVML/libc calls", "why": f"shim: {exc}"})
            return None, None, None
        if not self._shim_serves_program():
            return None, None, None
        try:
            lib = build_shim()
        except UserError as exc:
            self.not_traced.append({"what": "CUDA/NVML/libc calls", "why": str(exc)})
            return None, None, None
        run_dir = make_run_dir(work, other_uids=self._other_uids_write())
        env = shim_env(run_dir, self.env, lib)
        if containers.detect(self.command) is None:  # a container's loader is the image's
            problem = load_problem(env, self._user_ids())
            if problem is not None:
                # Not preloaded at all: the loader's complaint would change the command's stderr.
                user = self.run_as.user if self.run_as else "root"
                why = f"shim not loadable as {user}: {problem}"
                self.not_traced.append({"what": "CUDA/NVML/libc calls", "why": why})
                return None, None, None
        self.env = env
        self.announcements = PidAnnouncements(run_dir)
        if self.opts.reclaim_before_sizing:
            from uvmtrace.shim import reclaim_requests as rr
            from uvmtrace.tracer.hostinfo import gpu_info

            unified = bool(gpu_info().get("unified_memory"))
            self.reclaim_queries = rr.HOST_QUERIES + (rr.UNIFIED_QUERIES if unified else ())
            self.env.update(rr.reclaim_env(self.reclaim_queries))
            self.reclaim_requests = rr.ReclaimRequests(run_dir)
        return ShimDecoder(run_dir, host_pid=self.announcements.host_pid), lib, run_dir

    def _shim_serves_program(self) -> bool:
        """Decided before the program runs, from its ELF interpreter (a container's from its
        image): a musl program does not get the shim; a static one ignores it (its children
        get it). What the shim cannot serve at run time it leaves by itself (`.off` notes)."""
        from uvmtrace.shim.target import RootFs, preloadable, why_not_served

        found = containers.detect(self.command)
        if found is not None:
            program, interp = containers.program_interpreter(found[0], self.command, found[1])
            where = f"{program} in the container"
        else:
            try:
                program = resolve_command(self.command, self.env)
            except UserError:
                return True  # launching says why, in one line
            interp = RootFs([Path("/")]).program_interpreter(program, self.env.get("PATH", ""))
            where = program
        why = why_not_served(interp)
        if why is not None:
            self.not_traced.append({"what": f"CUDA/NVML/libc calls of {where}", "why": why})
        return preloadable(interp)

    def _user_ids(self) -> tuple[int, int, list[int]] | None:
        if self.run_as is None:
            return None
        return self.run_as.uid, self.run_as.gid, os.getgrouplist(self.run_as.user, self.run_as.gid)

    def _start_probes(self) -> KernelTracer | None:
        try:
            from uvmtrace.probes.kernel_tracer import KernelTracer
        except ImportError as exc:
            self.not_traced.append({"what": "kernel events", "why": f"probes: {exc}"})
            return None
        default = bpfsource.RAW_RING_PAGES if self.opts.raw else bpfsource.RING_PAGES
        pages = self.opts.ringbuf_pages or default
        tracer = KernelTracer(raw=self.opts.raw, ringbuf_pages=pages)
        try:
            tracer.start()
        except UserError as exc:  # no BCC, no tracefs, ...: record the rest, say what is missing
            self.not_traced.append({"what": "kernel events", "why": str(exc)})
            return None
        # A container is not a child of `docker run`: follow the cgroups created while recording.
        # Otherwise the command's own cgroup is exact, and other cgroups on the host are noise.
        tracer.watch_new_cgroups(self.container is not None or self.opts.watch_cgroups)
        # A native command works where it was started (its cwd is ours) and often writes next to
        # the output: files it wrote and closed before a drain are found there by inode.
        if self.container is None:
            tracer.search_files_under(os.getcwd(), str(self.opts.output.parent))
        return tracer

    # ---- the run ------------------------------------------------------------------------
    def run(self) -> Outcome:
        opts = self.opts
        # From the first moment: a signal during set-up (BPF compilation takes seconds) must not
        # kill us half-way; it stops the recording instead, and later ones go to the command.
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, self._on_signal)
        anchor = {"monotonic_ns": monotonic_ns(), "wall_ns": time.time_ns()}
        writer = RecordingWriter(opts.output, owner=self.owner)
        work = self._work_dir()
        try:
            return self._record(writer, work, anchor)
        finally:  # after the last decode: the shim's files live there
            self._stop_detached()
            shutil.rmtree(work, ignore_errors=True)

    def _stop_detached(self) -> None:
        """A detached container still running when the recording ends early (an error of ours)
        would keep an LD_PRELOAD into the directory about to be deleted: stop it."""
        if self.waiter is None or self.waiter.poll() is not None or self.container is None:
            return
        run = self.container
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([run.runtime, "stop", "-t", "5", str(run.container_id)],
                           capture_output=True, timeout=30)  # fmt: skip
            self.waiter.wait(timeout=30)
        self.not_traced.append(
            {"what": "the detached container", "why": "stopped: the recording ended first"}
        )

    def _record(self, writer: RecordingWriter, work: Path, anchor: dict[str, int]) -> Outcome:
        opts = self.opts
        meta = self.base_metadata(anchor)
        self.meta = meta  # what is known so far; the spool gets it as it grows
        writer.update_metadata(**meta)
        status = StatusLine(enabled=not opts.quiet)
        for note in self.cleanup:
            status.note(note)
        tracer = shim = run_cg = sampler = None
        targets: dict[int, Path] = {}
        code: int | None = None
        try:
            shim, lib, shim_dir = self._start_shim(work)
            for entry in self.not_traced if opts.shim else []:
                if entry["what"].startswith("CUDA"):
                    status.note(f"warning: {entry['what']} not traced: {entry['why']}")
            inject = opts.inject if opts.inject is not None else True
            rewritten = containers.rewrite(
                self.command,
                self._cidfile_dir(work),
                shim_lib=lib if inject else None,
                shim_run_dir=shim_dir if inject else None,
                shim_env=self.env,
            )
            if rewritten is not None:
                self.command, self.container = rewritten
                if self.command != opts.command:
                    meta["command_rewritten"] = self.command
                    status.note("running: " + shlex.join(self.command))
            tracer = self._start_probes()
            if self.reclaim_requests is not None:
                from uvmtrace.tracer.reclaim import Reclaimer

                own = (
                    work,
                    *([lib.parent] if lib else []),
                    Path(containers.SHIM_IN_CONTAINER).parent,
                )
                self.reclaimer = Reclaimer(self.reclaim_requests, tracer, exclude=own)
            gpu = gpu_info()
            meta["gpu"] = gpu
            if not gpu.get("available"):
                self.not_traced.append({"what": "GPU", "why": gpu.get("why", "no GPU")})
            nvml = Nvml()
            sampler = Sampler(self.hierarchy, nvml)
            if self.hierarchy and opts.own_cgroup:
                try:
                    run_cg = cgroupfs.make_run_cgroup(self.hierarchy, f"uvmtrace-{os.getpid()}")
                except OSError as exc:
                    self.not_traced.append(
                        {
                            "what": "the command's own memory cgroup",
                            "why": f"{exc.strerror}: it runs in uvmtrace's cgroup",
                        }  # fmt: skip
                    )
            if opts.memory_limit is not None:
                self._limit(run_cg, opts.memory_limit)
                meta["memory_limit"] = opts.memory_limit
            target_cg = run_cg or (
                cgroupfs.memory_cgroup_of(self.hierarchy) if self.hierarchy else None
            )
            if target_cg is not None:
                targets[cgroupfs.cgroup_id(target_cg)] = target_cg
            for cgid, path in targets.items():
                sampler.add_cgroup(cgid, path)
                if tracer is not None:
                    tracer.add_cgroup(cgid)
            self._describe_targets(meta, targets)
            writer.update_metadata(**meta)
            writer.write(sampler.sample())  # the baseline before the command starts
            status.clear()
            tee = OutputTee()  # forked before the probes adopt our next child: the command
            signal.signal(signal.SIGWINCH, lambda *_: self._resized(tee))
            signal.siginterrupt(signal.SIGWINCH, False)  # dragging a window fails no C call
            if tracer is not None:
                tracer.adopt_next_child()
            self.terminal = foreground_terminal()
            try:
                launched = launch(
                    self.command,
                    self.env,
                    run_as=self.run_as,
                    cgroup_procs=(run_cg / "cgroup.procs") if run_cg else None,
                    output=(tee.stdout_w, tee.stderr_w),
                    terminal=self.terminal,
                )
            finally:
                tee.command_started()  # or never will: either way the tee ends with the output
            pid = launched.pid
            if self.signals_seen:  # interrupted during set-up: the command never starts
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise Interrupted(128 + self.signals_seen[0])
            sampler.pids.add(pid)
            if tracer is not None:
                tracer.add_pid(pid)
            self.child_pid = pid
            # Spooled before the command runs, so a recorder killed at any later moment leaves
            # it (if exec fails, the recording is discarded below).
            writer.write(
                make_batch(
                    {
                        "ts_ns": monotonic_ns(),
                        "stream": "proc",
                        "event": "exec",
                        "pid": pid,
                        "text": " ".join(self.command),
                    }  # fmt: skip
                )
            )
            launched.release()
            why = exec_error(launched)
            if why is not None:
                os.waitpid(pid, 0)
                raise UserError(f"cannot run {self.command[0]}: {why}", exit_code=127)
            code = self._follow(launched, tee, writer, tracer, shim, sampler, status, targets)
        except Interrupted as stop:
            code = stop.code
            self.not_traced.append({"what": "the command", "why": "interrupted during set-up"})
        except UserError:
            status.clear()
            self._finish(writer, tracer, shim, meta, None, targets)
            writer.discard()  # the command never ran: nothing worth keeping
            raise
        except BaseException as exc:
            # A bug of ours: still hand over everything recorded so far, as a valid file, and
            # let the command run to its end (its exit code is still ours to return).
            status.clear()
            meta["error"] = repr(exc)
            if self.child_pid is not None and not isinstance(exc, KeyboardInterrupt):
                code = self._wait_quietly(self.child_pid)
                meta["exit_code"] = code
            self._finish(writer, tracer, shim, meta, sampler, targets)
            writer.close()
            if code is None or isinstance(exc, KeyboardInterrupt):
                raise
            raise UserError(
                f"internal error ({type(exc).__name__}: {exc}); recording stopped early, "
                f"the command ran to its end",
                exit_code=code,
            ) from None
        finally:
            self._take_terminal()  # on every path: the report lines are ours to print
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for sig in (*FORWARDED_SIGNALS[1:], signal.SIGWINCH):
                signal.signal(sig, signal.SIG_DFL)
            if run_cg is not None:
                self._remove_run_cgroup(run_cg)
        status.clear()
        meta["exit_code"] = code
        lost = self._finish(writer, tracer, shim, meta, sampler, targets)
        path = writer.close()
        if self.announcements is not None:
            self.announcements.close()
        if path is None:
            spool = writer.spool.directory if writer.spool else None
            return Outcome(
                code, opts.output, writer.rows, lost, failure=writer.failure, spool=spool
            )
        return Outcome(exit_code=code, path=path, rows=writer.rows, lost=lost)

    def base_metadata(self, anchor: dict[str, int]) -> dict[str, Any]:
        """What the metadata of every recording starts with."""
        return {
            "command": list(self.opts.command),
            "anchor": anchor,
            **host_info(),
            "cgroup_version": cgroupfs.cgroup_version(),
            "interval_s": self.opts.interval_s,
            "raw": self.opts.raw,
            "run_as": self.run_as.user if self.run_as else "root",
        }

    def _limit(self, run_cg: Path | None, limit: int) -> None:
        """A memory limit on the command's own cgroup (the kernel enforces it from here)."""
        if run_cg is None or self.hierarchy is None:
            raise UserError("--memory-limit needs the command's own memory cgroup (none here)")
        try:
            (run_cg / self.hierarchy.limit_file).write_text(str(limit))
        except OSError as exc:
            raise UserError(f"cannot set --memory-limit on {run_cg}: {exc.strerror}") from None

    def _remove_run_cgroup(self, run_cg: Path) -> None:
        """Processes the command left running move to our cgroup; the command's goes away."""
        moved = []
        if self.hierarchy is not None:
            moved = cgroupfs.empty_into(run_cg, cgroupfs.memory_cgroup_of(self.hierarchy))
        if moved:
            self.cleanup.append(
                f"moved processes {moved}, left running by the command, out of {run_cg.name}"
            )
        if not cgroupfs.remove_cgroup(run_cg):
            self.not_traced.append({"what": "cleanup", "why": f"{run_cg} still has tasks"})

    @staticmethod
    def _wait_quietly(pid: int) -> int | None:
        try:
            _, status_word = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped already
            return None
        return exit_code(status_word)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signals_seen.append(signum)
        if self.waiter is not None and self.waiter.poll() is None and self.container is not None:
            containers.signal_container(self.container, signal.Signals(signum).name)
        elif self.child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child_pid, signum)

    def _take_terminal(self) -> None:
        """The command ended or stopped: the terminal's foreground is ours again (a shell's
        step too). Typed ^C reached the command directly meanwhile, never us: one SIGINT."""
        if self.terminal is not None:
            set_foreground(self.terminal, os.getpgrp())
            self.terminal = None

    def _stopped(self, pid: int, signum: int, status: StatusLine) -> None:
        """The command was stopped from the terminal (^Z): stop too, so the user's shell gets
        the terminal back and reports the job stopped, as without us; once continued (`fg` or
        `bg`), continue the command, with the terminal if we have it again (`fg`)."""
        if signum not in TERMINAL_STOPS:
            return
        self._take_terminal()
        status.clear()
        os.kill(os.getpid(), signal.SIGTSTP)  # returns when the shell continues us
        self.terminal = foreground_terminal()
        if self.terminal is not None:
            set_foreground(self.terminal, pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)

    def _poll_size(self, tee: OutputTee) -> None:
        """While the command holds the terminal, the kernel sends SIGWINCH to it, not to us, so
        its pty is not resized yet when the signal lands: resize it, then signal it again."""
        if self.terminal is None or not tee.ptys:
            return
        sizes = []
        for _, terminal in tee.ptys:
            with contextlib.suppress(OSError):
                sizes.append(fcntl.ioctl(terminal, termios.TIOCGWINSZ, bytes(8)))
        if sizes != self.terminal_sizes:
            if self.terminal_sizes:
                self._resized(tee)
            self.terminal_sizes = sizes

    def _resized(self, tee: OutputTee) -> None:
        """The terminal was resized: the command's pty first, then the command is told (it
        would be, in the terminal's foreground group without us; its own group is not)."""
        tee.resize()
        if self.child_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child_pid, signal.SIGWINCH)

    def _follow(
        self,
        launched: Launched,
        tee: OutputTee,
        writer: RecordingWriter,
        tracer: KernelTracer | None,
        shim: ShimDecoder | None,
        sampler: Sampler,
        status: StatusLine,
        targets: dict[int, Path],
    ) -> int:
        """Pass the command's output on and drain every source until the command exits."""
        pid = launched.pid
        scanner = LogScanner()

        def log_events(lines: list[bytes]) -> None:
            batch = scanner.scan(lines, monotonic_ns())
            if batch is not None:
                writer.write(batch)

        pump = OutputPump(tee.copies, log_events)
        status.draw = tee.status
        ticker = Ticker(writer, tracer, shim, status, lambda: self._charged(targets))
        next_sample = _next_on_grid(ticker.started, self.opts.interval_s)
        while True:
            wait = min(0.05, max(0.0, next_sample - time.monotonic()))
            if pump.open:
                pump.pump(wait)
            else:
                time.sleep(wait)
            if tracer is not None:
                for batch in tracer.poll(0):
                    writer.write(batch)
                    if self.reclaimer is not None:
                        self.reclaimer.observe(batch)
            if self.reclaimer is not None:
                for batch in self.reclaimer.serve():  # the shim waits in a sizing query
                    writer.write(batch)
            now = time.monotonic()
            if now >= next_sample:
                next_sample = _next_on_grid(now, self.opts.interval_s)
                known = len(targets)
                self._watch_container(tracer, sampler, targets)
                writer.write(sampler.sample())
                if len(targets) != known:  # the container's cgroup: its name goes in the spool
                    self._describe_targets(self.meta, targets)
                    writer.update_metadata(**self.meta)
            if self.announcements is not None:
                self.announcements.accept_all()  # before the shims' backlog fills
            ticker.tick(now)
            self._poll_size(tee)
            if self._command_done(pid, status):
                break
        # The command has exited but is not reaped: its /proc/PID/stat still holds its counters.
        # The last sample too falls on the grid, after the bucket of the exit's uncharges.
        time.sleep(
            max(0.0, _next_on_grid(time.monotonic(), self.opts.interval_s) - time.monotonic())
        )
        sampler.pids.add(pid)
        writer.write(sampler.sample())
        _, status_word = os.waitpid(pid, 0)
        status.clear()
        pump.finish()
        status.draw = None
        tee.close()
        for name, lost in tee.dropped().items():
            if lost:  # the command's output is whole; only the recorder's copy lagged
                self.not_traced.append(
                    {
                        "what": f"{lost:,} bytes of the command's {name} (framework log lines)",
                        "why": "the recorder lagged behind the output; the copy it scans was cut",
                    }
                )
        code = exit_code(status_word)
        writer.write(
            make_batch(
                {
                    "ts_ns": monotonic_ns(),
                    "stream": "proc",
                    "event": "wait_status",
                    "pid": pid,
                    "result": code,
                }  # fmt: skip
            )
        )
        return code

    def _command_done(self, pid: int, status: StatusLine) -> bool:
        """The command has exited; after `docker run -d`, the container it started too."""
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WSTOPPED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped already
            self._take_terminal()
            return True
        if info is None:
            return False
        if info.si_code == os.CLD_STOPPED:
            os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG)  # seen: reported once per stop
            self._stopped(pid, info.si_status, status)
            return False
        self._take_terminal()  # as soon as it exits: a detached container's ^C is ours
        run = self.container
        if run is None or not run.detached:
            return True
        if self.waiter is None:
            containers.resolve(run)
            if run.container_id is None:  # the client failed before creating it
                return True
            # The client returned at once; the container runs on, with the shim preloaded
            # from our run directory: follow it until it exits (Ctrl-C is passed on to it).
            self.waiter = containers.wait(run)
            status.note(
                f"following the detached container {run.name or run.container_id[:12]} "
                "until it exits (Ctrl-C stops it)"
            )
            return False
        if self.waiter.poll() is None:
            return False
        out = (self.waiter.stdout.read() if self.waiter.stdout else "").strip()
        run.exit_code = int(out) if out.lstrip("-").isdigit() else None
        return True

    def _watch_container(
        self, tracer: KernelTracer | None, sampler: Sampler, targets: dict[int, Path]
    ) -> None:
        run = self.container
        if run is None or run.host_pid or self.hierarchy is None:
            return
        if not containers.resolve(run):
            return
        try:
            path = cgroupfs.memory_cgroup_of(self.hierarchy, run.host_pid)
            cgid = cgroupfs.cgroup_id(path)
        except OSError:
            return
        targets[cgid] = path
        sampler.add_cgroup(cgid, path)
        sampler.pids.add(run.host_pid)
        if tracer is not None:
            tracer.add_cgroup(cgid)
            tracer.add_pid(run.host_pid)
            if not self.opts.watch_cgroups:
                _keep_only_container(tracer, "/" + str(path.relative_to(self.hierarchy.mount)))
        run.extra["cgroup_id"] = cgid
        run.extra["cgroup_path"] = "/" + str(path.relative_to(self.hierarchy.mount))

    def _describe_targets(self, meta: dict[str, Any], targets: dict[int, Path]) -> None:
        """The target cgroups and the container, by name: in the spool as soon as they are
        known, so that a recovered recording still names them."""
        cg_meta = meta.setdefault("cgroups", {})
        if self.hierarchy is not None:
            for cgid, path in targets.items():
                entry = cg_meta.setdefault(str(cgid), {})
                entry.setdefault("path", "/" + str(path.relative_to(self.hierarchy.mount)))
                entry.setdefault("hierarchy", f"v{self.hierarchy.version}")
        if self.container is not None:
            run = self.container
            meta["container"] = {
                "runtime": run.runtime,
                "id": run.container_id,
                "name": run.name,
                **run.extra,
                **({"detached": True, "exit_code": run.exit_code} if run.detached else {}),
            }
            cgid = run.extra.get("cgroup_id")
            if cgid is not None:
                cg_meta.setdefault(str(cgid), {}).update(
                    container_id=run.container_id, container_name=run.name
                )
        meta["target_cgroups"] = sorted(targets)

    def _charged(self, targets: dict[int, Path]) -> int | None:
        if not targets or self.hierarchy is None:
            return None
        return sum(cgroupfs.read_int(p / self.hierarchy.usage_file) or 0 for p in targets.values())

    def _finish(
        self,
        writer: RecordingWriter,
        tracer: KernelTracer | None,
        shim: ShimDecoder | None,
        meta: dict[str, Any],
        sampler: Sampler | None,
        targets: dict[int, Path],
    ) -> dict[str, int]:
        """Drain every source and complete the metadata; safe to call on the error path."""
        lost: dict[str, int] = {}
        if tracer is not None:
            try:
                for batch in tracer.stop():
                    writer.write(batch)
                tmeta = tracer.metadata()
                lost.update(tmeta.get("lost", {}))
                meta.update({k: v for k, v in tmeta.items() if k != "cgroups"})
                meta["cgroups"] = {str(k): v for k, v in tmeta.get("cgroups", {}).items()}
            except Exception as exc:  # never lose the file to a probe problem
                self.not_traced.append({"what": "kernel events (final drain)", "why": str(exc)})
        if shim is not None:
            try:
                if self.announcements is not None:
                    self.announcements.accept_all()
                for batch in shim.close():
                    writer.write(batch)
                stats = shim.stats()
                meta["shim"] = stats
                for note in stats.get("without_shim", []) + stats.get("notes", []):
                    what = f"CUDA/NVML/libc calls of {note['exe']} (pid {note['pid']})"
                    self.not_traced.append({"what": what, "why": note["why"]})
                if stats.get("torn"):
                    lost["shim_torn_records"] = stats["torn"]
            except Exception as exc:
                self.not_traced.append({"what": "CUDA calls (final decode)", "why": str(exc)})
        if sampler is not None:
            writer.write(sampler.fault_batch(at_exit={self.child_pid} if self.child_pid else set()))
            if sampler.nvml is not None and sampler.nvml.notes:
                meta["nvml_notes"] = sampler.nvml.notes
        self._describe_targets(meta, targets)
        if self.reclaimer is not None:
            for batch in self.reclaimer.serve():  # a last request must not wait for its timeout
                writer.write(batch)
            meta["reclaim_before_sizing"] = self.reclaimer.metadata(self.reclaim_queries)
        if self.reclaim_requests is not None:
            self.reclaim_requests.close()
        meta["lost"] = lost
        meta["not_traced"] = self.not_traced
        meta["cleanup"] = self.cleanup
        if writer.rows_not_written:
            lost["not_written"] = writer.rows_not_written
        if self.signals_seen:
            meta["signals_forwarded"] = [signal.Signals(s).name for s in self.signals_seen]
        writer.update_metadata(**meta)
        return lost


@dataclass
class Ticker:
    """The recording loop's slower steps, the same for a launched and an attached recording:
    read the shim's record files, redraw the status line."""

    writer: RecordingWriter
    tracer: KernelTracer | None
    shim: ShimDecoder | None
    status: StatusLine
    charged: Callable[[], int | None]  # bytes charged to the target cgroups (status line)
    started: float = field(default_factory=time.monotonic)
    next_shim: float = 0.0
    status_due: float = 0.0

    def tick(self, now: float) -> None:
        if self.shim is not None and now >= self.next_shim:
            self.next_shim = now + SHIM_POLL_S
            for batch in self.shim.poll():
                self.writer.write(batch)
        if now >= self.status_due:
            self.status_due = now + STATUS_EVERY_S
            if self.tracer is not None and self.status.tty:
                self.status.drops = self.tracer.lost()
            self.status.update(now - self.started, self.writer.rows, self.charged())


def _keep_only_container(tracer: KernelTracer, container: str) -> None:
    """The container is known: stop adopting new cgroups, and forget those adopted meanwhile
    that are not the container's own, an ancestor or a descendant (another session's cgroup,
    a service restarting on the host)."""
    tracer.watch_new_cgroups(False)
    for cgid in tracer.watched_cgroups():
        found = cgroupfs.find_cgroup(cgid)
        rel = found[0] if found else None
        related = rel is not None and (
            rel == container
            or rel.startswith(container.rstrip("/") + "/")
            or container.startswith(rel.rstrip("/") + "/")
        )
        if not related:
            tracer.forget_cgroup(cgid)


def _next_on_grid(now: float, interval: float) -> float:
    """The next multiple of `interval` on the monotonic clock: samples fall just after the
    probes' aggregation buckets start (both on CLOCK_MONOTONIC), so a sample and the charges
    of the buckets before it describe the same moment."""
    return (int(now / interval) + 1) * interval
