"""`uvmtrace record --pid / --container / --cgroup`: record what is already running.

The probes attach, the targets are added to their scope (a process with the children it forks
later; a container's or a cgroup's memory cgroup, whose every charge is kept and whose members
are adopted as they charge), then a snapshot of the starting state is taken (tracer/snapshot.py)
and the cgroups are sampled as in a launched recording. The recording ends at Ctrl-C, after
`--duration`, or when every target has gone, always with a complete file. Events before the
attach are missing, which the metadata (`attach`) and the report say; the snapshot is their
baseline. The CUDA shim cannot be preloaded into a running process: the recording says so, and
how to start the workload with it next time.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvmtrace.host import cgroupfs
from uvmtrace.recording.errors import UserError
from uvmtrace.recording.schema import make_batch
from uvmtrace.recording.writer import RecordingWriter
from uvmtrace.tracer import containers, preloaded, snapshot
from uvmtrace.tracer.hostinfo import gpu_info
from uvmtrace.tracer.leftovers import prepare_output
from uvmtrace.tracer.samplers import Nvml, Sampler, monotonic_ns
from uvmtrace.tracer.session import (
    FORWARDED_SIGNALS,
    Options,
    Outcome,
    Session,
    Ticker,
    _next_on_grid,
)
from uvmtrace.tracer.status import StatusLine

if TYPE_CHECKING:
    from uvmtrace.probes.kernel_tracer import KernelTracer
MISSING_BEFORE = (
    "events before the attach are missing: the snapshot taken at attach (stream `snapshot`, "
    "the first memory.stat sample) is the starting state"
)


@dataclass(frozen=True)
class AttachRequest:
    pids: tuple[int, ...] = ()
    containers: tuple[str, ...] = ()
    cgroups: tuple[str, ...] = ()
    duration_s: float | None = None

    def __bool__(self) -> bool:
        return bool(self.pids or self.containers or self.cgroups)


@dataclass
class Target:
    kind: str  # "pid" | "container" | "cgroup"
    given: str  # as the user wrote it
    pid: int | None  # the process, or the container's init process
    start_time: int | None  # /proc/PID/stat starttime: a reused pid is not the target
    cgroup: Path | None  # the memory cgroup sampled
    keep_cgroup: bool  # every charge to that cgroup is kept, whoever makes it
    container: dict[str, Any] = field(default_factory=dict)  # runtime, id, name, image, ...
    cgroup_id: int | None = None

    def state(self) -> str:
        """ "running", "exiting" (its memory is being torn down) or "gone"."""
        if self.pid is not None:
            start, exiting = _proc_state(self.pid)
            if start != self.start_time:
                return "gone"
            return "exiting" if exiting else "running"
        return "running" if self.cgroup is not None and self.cgroup.is_dir() else "gone"

    def processes(self) -> list[int]:
        """The processes it is made of now: the process and its descendants, or the members
        of the cgroup and of the cgroups below it."""
        if self.kind == "pid":
            from uvmtrace.probes.kernel_tracer import descendants

            return [self.pid, *descendants(self.pid)] if self.state() == "running" else []
        return cgroupfs.members(self.cgroup) if self.cgroup is not None else []


PF_EXITING = 0x4  # include/linux/sched.h: set before the process's memory is released


def _proc_state(pid: int) -> tuple[int | None, bool]:
    """(starttime, exiting) from /proc/PID/stat; starttime None for no such process or a
    zombie (it has exited)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None, False
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 of proc(5)
    if fields[0] in ("Z", "X"):
        return None, False
    return int(fields[19]), bool(int(fields[6]) & PF_EXITING)


def _start_time(pid: int) -> int | None:
    start, exiting = _proc_state(pid)
    return None if exiting else start


def resolve_targets(req: AttachRequest, hierarchy: cgroupfs.MemoryHierarchy | None) -> list[Target]:
    """The targets, or a one-line error for one that does not exist."""
    out = [_pid_target(pid, hierarchy) for pid in req.pids]
    out += [_container_target(ref, hierarchy) for ref in req.containers]
    out += [_cgroup_target(path, hierarchy) for path in req.cgroups]
    return out


def _pid_target(pid: int, hierarchy: cgroupfs.MemoryHierarchy | None) -> Target:
    start = _start_time(pid)
    if start is None:
        raise UserError(f"no running process with pid {pid}")
    cgroup = cgroupfs.memory_cgroup_if_any(hierarchy, pid)
    # The cgroup's charges are the process's only when it holds nothing else (a systemd
    # service, a container): then it is reconcilable, and kept whoever charges it.
    tree = {pid}
    if cgroup is not None:
        from uvmtrace.probes.kernel_tracer import descendants

        tree |= set(descendants(pid))
    exclusive = (
        cgroup is not None
        and hierarchy is not None
        and cgroup != hierarchy.mount
        and set(cgroupfs.members(cgroup)) <= tree
    )
    return Target("pid", str(pid), pid, start, cgroup, exclusive)


def _container_target(ref: str, hierarchy: cgroupfs.MemoryHierarchy | None) -> Target:
    found = containers.find_running(ref)
    start = _start_time(found.pid)
    if start is None:
        raise UserError(f"container {found.name or ref} is not running")
    meta = {"runtime": found.runtime, "id": found.id, "name": found.name, "pid": found.pid,
            **found.extra}  # fmt: skip
    cgroup = cgroupfs.memory_cgroup_if_any(hierarchy, found.pid)
    return Target("container", ref, found.pid, start, cgroup, True, meta)


def _cgroup_target(given: str, hierarchy: cgroupfs.MemoryHierarchy | None) -> Target:
    if hierarchy is None:
        raise UserError(f"cannot trace cgroup {given}: this host has no memory cgroup hierarchy")
    path = hierarchy.lookup(given)
    if path is None:
        looked = hierarchy.path_of(given) / "memory.stat"
        raise UserError(f"no memory cgroup {given} (looked for {looked})")
    return Target("cgroup", given, None, None, path.resolve(), True)


def cuda_next_time() -> dict[str, str]:
    """How to get the CUDA stream next time: the shim must be loaded when the program starts.
    A process started with it (the compose example) is read when uvmtrace attaches to it."""
    from uvmtrace.shim.build import shim_path

    inside = containers.SHIM_IN_CONTAINER
    run = containers.RUN_DIR_IN_CONTAINER
    return {
        "why": "LD_PRELOAD acts when a program starts: a running process cannot be given the shim",
        "launch": "sudo uvmtrace record -o run.parquet -- docker run [--gpus all ...] IMAGE CMD "
        "(or `-- CMD` for a native process): uvmtrace preloads the shim itself",
        "compose": (
            "services:\n  server:\n    volumes:\n"
            f"      - {shim_path()}:{inside}:ro   # `uvmtrace shim build` prints it\n"
            f"      - /var/lib/uvmtrace/shim:{run}   # mode 1733, like /tmp\n"
            f"    environment:\n      LD_PRELOAD: {inside}\n      UVMTRACE_SHIM_DIR: {run}\n"
            "then `sudo uvmtrace record --container server -o run.parquet` also reads every "
            "call the shim recorded since the container started"
        ),
    }


def record_running(opts: Options, req: AttachRequest) -> Outcome:
    if opts.command:
        raise UserError("give either a command (-- CMD) or --pid/--container/--cgroup, not both")
    if os.geteuid() != 0:
        raise UserError(
            "uvmtrace record needs root for eBPF; run it with sudo (the targets are not touched)"
        )
    if req.duration_s is not None and req.duration_s <= 0:
        raise UserError(f"--duration must be positive, not {req.duration_s}")
    from uvmtrace.recording.safefs import check_writable_target

    check_writable_target(opts.output)
    session = AttachSession(opts, req)
    session.targets = resolve_targets(req, session.hierarchy)  # before anything is written
    # as `record -- CMD` does: refuse to overwrite without --force, number an old spool
    session.cleanup = prepare_output(opts.output, force=opts.force)
    return session.run()


class AttachSession(Session):
    """A recording session around running targets instead of a launched command: set-up,
    draining and the final metadata are the Session's; only the middle differs."""

    def __init__(self, opts: Options, req: AttachRequest) -> None:
        super().__init__(opts)
        self.request = req
        self.targets: list[Target] = []
        self.ended = ""

    def run(self) -> Outcome:
        opts = self.opts
        for sig in FORWARDED_SIGNALS:  # stop the recording, never the targets
            signal.signal(sig, self._on_signal)
        anchor = {"monotonic_ns": monotonic_ns(), "wall_ns": time.time_ns()}
        writer = RecordingWriter(opts.output, owner=self.owner)
        meta = self.base_metadata(anchor)
        writer.update_metadata(**meta)
        status = StatusLine(enabled=not opts.quiet)
        for note in self.cleanup:
            status.note(note)
        tracer = sampler = shim = None
        cg_targets: dict[int, Path] = {}
        try:
            tracer = self._start_probes()
            meta["gpu"] = gpu = gpu_info()
            if not gpu.get("available"):
                self.not_traced.append({"what": "GPU", "why": gpu.get("why", "no GPU")})
            sampler = Sampler(self.hierarchy, Nvml())
            for t in self.targets:
                self._add_target(t, tracer, sampler, cg_targets)
            attached_ns = monotonic_ns()
            processes = sorted({p for t in self.targets for p in t.processes()})
            batch, counts = snapshot.take(processes)
            writer.write(batch)
            dirs = preloaded.find(processes)
            if dirs:  # started with the shim: its calls since the start are there
                shim = preloaded.PreloadedShim(dirs, attached_ns)
            else:
                self._cuda_not_traced()
            writer.write(sampler.sample())  # memory.stat at attach: the baseline
            writer.write(self._proc_rows("attach", attached_ns))
            meta["attach"] = {
                "attached_ns": attached_ns,
                "targets": [self._describe(t) for t in self.targets],
                "duration_s": self.request.duration_s,
                "missing_before": MISSING_BEFORE,
                "snapshot": counts,
                "shim": shim.describe() if shim is not None else None,
                "cuda_next_time": None if shim is not None else cuda_next_time(),
            }
            writer.update_metadata(**meta)
            status.note(self._attached_line())
            self._follow_targets(writer, tracer, shim, sampler, status, cg_targets)
        except BaseException as exc:
            status.clear()
            meta["error"] = repr(exc)
            self._finish(writer, tracer, shim, meta, sampler, cg_targets)
            writer.close()
            raise
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for sig in FORWARDED_SIGNALS[1:]:
                signal.signal(sig, signal.SIG_DFL)
        status.clear()
        meta["attach"]["ended"] = self.ended
        meta["exit_code"] = 0
        lost = self._finish(writer, tracer, shim, meta, sampler, cg_targets)
        self._name_containers(meta, writer)
        path = writer.close()
        return Outcome(exit_code=0, path=path, rows=writer.rows, lost=lost, ended=self.ended)

    # ---- set-up -------------------------------------------------------------------------
    def _cuda_not_traced(self) -> None:
        self.not_traced.append(
            {
                "what": "CUDA/NVML/libc calls",
                "why": "attached to running processes: the shim can only be preloaded when a "
                "program starts (attach.cuda_next_time says how, next time)",
            }  # fmt: skip
        )

    def _add_target(
        self,
        t: Target,
        tracer: KernelTracer | None,
        sampler: Sampler,
        cg_targets: dict[int, Path],
    ) -> None:
        if t.cgroup is not None:
            try:
                cgid = cgroupfs.cgroup_id(t.cgroup)
            except OSError:
                cgid = None
            if cgid is not None:
                sampler.add_cgroup(cgid, t.cgroup)
                t.cgroup_id = cgid
                if t.keep_cgroup:
                    cg_targets[cgid] = t.cgroup
                    if tracer is not None:
                        tracer.add_cgroup(cgid)
        if tracer is not None:
            for pid in [t.pid] if t.pid is not None else t.processes():
                tracer.add_pid(pid)  # with its descendants, now and as they fork

    def _describe(self, t: Target) -> dict[str, Any]:
        rel = None
        if t.cgroup is not None and self.hierarchy is not None:
            rel = "/" + str(t.cgroup.relative_to(self.hierarchy.mount)).removeprefix(".")
        out: dict[str, Any] = {
            "kind": t.kind,
            "given": t.given,
            "pid": t.pid,
            "cgroup_path": rel,
            "cgroup_id": t.cgroup_id,
            "cgroup_charges_kept": t.keep_cgroup,
        }
        if t.kind == "container":
            out["container"] = t.container
        return out

    def _attached_line(self) -> str:
        what = ", ".join(f"{t.kind} {t.given}" for t in self.targets)
        until = f"for {self.request.duration_s:g} s" if self.request.duration_s else "until Ctrl-C"
        return f"attached to {what}; recording {until} or until the targets exit"

    def _proc_rows(self, event: str, ts: int, text: str | None = None) -> Any:
        return make_batch(
            {
                "ts_ns": [ts] * len(self.targets),
                "stream": "proc",
                "event": event,
                "pid": [t.pid for t in self.targets],
                "item": [t.kind for t in self.targets],
                "text": [text or t.given for t in self.targets],
            }
        )

    # ---- the recording ------------------------------------------------------------------
    def _follow_targets(
        self,
        writer: RecordingWriter,
        tracer: KernelTracer | None,
        shim: preloaded.PreloadedShim | None,
        sampler: Sampler,
        status: StatusLine,
        cg_targets: dict[int, Path],
    ) -> None:
        interval = self.opts.interval_s
        ticker = Ticker(writer, tracer, shim, status, lambda: self._charged(cg_targets))
        started = ticker.started
        deadline = started + self.request.duration_s if self.request.duration_s else None
        next_sample = _next_on_grid(started, interval)
        known = {p for t in self.targets for p in t.processes()}
        while True:
            if self.signals_seen:
                self.ended = f"stopped by {signal.Signals(self.signals_seen[0]).name}"
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                self.ended = f"--duration {self.request.duration_s:g} s elapsed"
                break
            if now >= next_sample:
                # First thing at the grid point: the sample must describe the moment the
                # probes' bucket starts, not one a drain later.
                next_sample = _next_on_grid(now, interval)
                states = {t.state() for t in self.targets}
                if states == {"gone"}:
                    self.ended = "the targets exited"
                    break
                if "exiting" not in states:  # mid-teardown: neither before nor after
                    writer.write(sampler.sample())
                self._adopt_newcomers(tracer, known)
            wait = max(0.0, min(0.05, next_sample - time.monotonic()))
            if tracer is None or wait < 0.005:  # too close to the grid for a drain
                time.sleep(wait)
            else:
                for batch in tracer.poll(max(1, int(wait * 1000))):
                    writer.write(batch)
            ticker.tick(now)
        # The last sample on the grid, after the bucket of the last charges (as for a command).
        time.sleep(max(0.0, _next_on_grid(time.monotonic(), interval) - time.monotonic()))
        writer.write(sampler.sample())
        writer.write(self._proc_rows("detach", monotonic_ns(), self.ended))

    def _adopt_newcomers(self, tracer: KernelTracer | None, known: set[int]) -> None:
        """Processes that joined a target cgroup (`docker exec`) are traced from now on; the
        kernel adopts a member only at its first charge, which may come after its mmaps."""
        if tracer is None:
            return
        for t in self.targets:
            if t.kind == "pid" or t.cgroup is None:
                continue
            for pid in cgroupfs.members(t.cgroup):
                if pid not in known:
                    known.add(pid)
                    tracer.add_pid(pid)

    def _name_containers(self, meta: dict[str, Any], writer: RecordingWriter) -> None:
        cg_meta = meta.setdefault("cgroups", {})
        for t in self.targets:
            if t.kind == "container" and t.cgroup_id is not None:
                cg_meta.setdefault(str(t.cgroup_id), {}).update(
                    container_id=t.container.get("id"), container_name=t.container.get("name")
                )
        writer.update_metadata(cgroups=cg_meta)
