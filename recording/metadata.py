"""The recording's file metadata (the `uvmtrace` key, JSON), typed: the one declaration of its
shape. The recorder writes a JSON object (tracer/session.py, tracer/attach.py, recover);
`Metadata.from_json` reads it once, so readers get typed fields instead of probing a dict.

Reading is lenient, as a reader of files written by other versions must be: a missing key gets
its default, a value of the wrong type is dropped (never an exception), and keys this version
does not know are kept in `extra`. docs/recording.md describes every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _bool(v: Any, default: bool = False) -> bool:
    return v if isinstance(v, bool) else default


def _ints(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list):
        return ()
    out = []
    for x in v:
        try:
            out.append(int(x))
        except (TypeError, ValueError):
            continue
    return tuple(out)


@dataclass(frozen=True)
class CgroupInfo:
    """A cgroup the recording saw: `target` (given to the probes), `created` (cgroup_mkdir)."""

    path: str | None = None
    hierarchy: str | None = None
    container_id: str | None = None
    container_name: str | None = None
    target: bool = False
    created: bool = False

    @classmethod
    def from_json(cls, d: Any) -> CgroupInfo:
        d = _dict(d)
        return cls(
            path=_str(d.get("path")),
            hierarchy=_str(d.get("hierarchy")),
            container_id=_str(d.get("container_id")),
            container_name=_str(d.get("container_name")),
            target=_bool(d.get("target")),
            created=_bool(d.get("created")),
        )


@dataclass(frozen=True)
class ProbeState:
    attached: bool
    variant: str | None = None
    why: str | None = None
    attach: str | None = None  # how it attached where it has a choice (e.g. raw tracepoints)
    attach_why: str | None = None

    @classmethod
    def from_json(cls, d: Any) -> ProbeState:
        d = _dict(d)
        return cls(
            attached=_bool(d.get("attached"), True),
            variant=_str(d.get("variant")),
            why=_str(d.get("why")),
            attach=_str(d.get("attach")),
            attach_why=_str(d.get("attach_why")),
        )


@dataclass(frozen=True)
class NotTraced:
    """Something the recording does not hold, and why (`what` is never empty)."""

    what: str
    why: str | None = None


@dataclass(frozen=True)
class Container:
    """The container `record -- docker run ...` started (or an attached one)."""

    id: str | None = None
    name: str | None = None
    cgroup_id: int | None = None
    cgroup_path: str | None = None
    runtime: str | None = None
    image: str | None = None
    memory_limit: int | None = None

    @property
    def label(self) -> str | None:
        """Its name, else its short id."""
        return self.name or (self.id[:12] if self.id else None)

    @classmethod
    def from_json(cls, d: Any) -> Container | None:
        if not isinstance(d, dict):
            return None
        cgroup_id = d.get("cgroup_id")
        try:
            cgroup_id = None if cgroup_id is None else int(cgroup_id)
        except (TypeError, ValueError):
            cgroup_id = None
        return cls(
            id=_str(d.get("id")),
            name=_str(d.get("name")),
            cgroup_id=cgroup_id,
            cgroup_path=_str(d.get("cgroup_path")),
            runtime=_str(d.get("runtime")),
            image=_str(d.get("image")),
            memory_limit=_int(d.get("memory_limit")),
        )


@dataclass(frozen=True)
class Attach:
    """`record --pid/--container/--cgroup`: what was attached to, when, and what is missing."""

    attached_ns: int | None = None
    targets: tuple[dict[str, Any], ...] = ()
    duration_s: float | None = None
    ended: str | None = None
    missing_before: str | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)
    # how to start the workload with the shim next time: why, launch, compose
    cuda_next_time: dict[str, str] | None = None

    @classmethod
    def from_json(cls, d: Any) -> Attach | None:
        if not isinstance(d, dict):
            return None
        duration = d.get("duration_s")
        return cls(
            attached_ns=_int(d.get("attached_ns")),
            targets=tuple(t for t in d.get("targets") or [] if isinstance(t, dict)),
            duration_s=float(duration) if isinstance(duration, int | float) else None,
            ended=_str(d.get("ended")),
            missing_before=_str(d.get("missing_before")),
            snapshot=_dict(d.get("snapshot")),
            cuda_next_time=d.get("cuda_next_time")
            if isinstance(d.get("cuda_next_time"), dict)
            else None,
        )


@dataclass(frozen=True)
class Gpu:
    driver: str | None = None
    cuda: str | int | None = None
    devices: tuple[dict[str, Any], ...] = ()
    unified_memory: bool | None = None

    @classmethod
    def from_json(cls, d: Any) -> Gpu:
        d = _dict(d)
        unified = d.get("unified_memory")
        return cls(
            driver=_str(d.get("driver")),
            cuda=d.get("cuda") if isinstance(d.get("cuda"), str | int) else None,
            devices=tuple(x for x in d.get("devices") or [] if isinstance(x, dict)),
            unified_memory=unified if isinstance(unified, bool) else None,
        )


# top-level keys read into typed fields; any other key stays in `extra`
_TYPED = {
    "schema_version", "uvmtrace_version", "command", "command_rewritten", "exit_code",
    "anchor", "host", "kernel", "gpu", "cgroup_version", "cgroups", "target_cgroups", "probes",
    "memcg_variant", "lost", "bucket_ns", "raw", "page_size", "interval_s", "not_traced",
    "cleanup", "container", "attach", "shim", "recovered", "recovered_torn_bytes",
    "reclaim_before_sizing", "machine", "python", "mem_total_bytes", "run_as", "host_paths",
    "memory_limit", "error", "nvml_notes", "signals_forwarded",
}  # fmt: skip


@dataclass(frozen=True)
class Metadata:
    schema_version: int
    uvmtrace_version: str | None = None
    command: tuple[str, ...] = ()
    command_rewritten: tuple[str, ...] = ()
    # None with `ended` true: the command's status is unknown (attached, or not reaped)
    exit_code: int | None = None
    ended: bool = False  # the recorder wrote the command's end (`exit_code` key present)
    anchor: dict[str, int] = field(default_factory=dict)
    host: str | None = None
    kernel: str | None = None
    machine: str | None = None
    python: str | None = None
    mem_total_bytes: int | None = None
    run_as: str | None = None  # the account the command ran as (`root` or the sudo user)
    gpu: Gpu = field(default_factory=Gpu)
    cgroup_version: str | int | None = None
    cgroups: dict[int, CgroupInfo] = field(default_factory=dict)
    target_cgroups: tuple[int, ...] = ()
    probes: dict[str, ProbeState] = field(default_factory=dict)
    memcg_variant: str | None = None
    # per probe, plus `not_written`, `shim_torn_records`; nested skips are {name: {...}}
    lost: dict[str, Any] = field(default_factory=dict)
    bucket_ns: int | None = None
    raw: bool = True  # aggregated rows (bucket_ns) only when the recorder says so
    page_size: int = 4096
    interval_s: float | None = None
    not_traced: tuple[NotTraced, ...] = ()
    cleanup: tuple[str, ...] = ()
    container: Container | None = None
    attach: Attach | None = None
    shim: dict[str, Any] = field(default_factory=dict)
    recovered: bool = False
    recovered_torn_bytes: int = 0
    reclaim_before_sizing: dict[str, Any] | None = None
    # in-container path -> host path of files the command read (image layers)
    host_paths: dict[str, str] = field(default_factory=dict)
    memory_limit: int | None = None  # record --memory-limit
    error: str | None = None  # what stopped the recording early (a write error)
    nvml_notes: tuple[str, ...] = ()
    signals_forwarded: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def command_line(self) -> str | None:
        return " ".join(self.command) or None

    def cgroup(self, cgroup_id: int | None) -> CgroupInfo:
        return (
            self.cgroups.get(int(cgroup_id), CgroupInfo())
            if cgroup_id is not None
            else CgroupInfo()
        )

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Metadata:
        cmd = d.get("command")
        command = (
            tuple(str(x) for x in cmd) if isinstance(cmd, list) else ((cmd,) if _str(cmd) else ())
        )
        rewritten = d.get("command_rewritten")
        cgroups = {}
        for k, v in _dict(d.get("cgroups")).items():
            try:
                cgroups[int(k)] = CgroupInfo.from_json(v)
            except ValueError:
                continue
        not_traced = tuple(
            NotTraced(str(e["what"]), _str(e.get("why")))
            for e in d.get("not_traced") or []
            if isinstance(e, dict) and e.get("what")
        )
        interval = d.get("interval_s")
        version = d.get("cgroup_version")
        return cls(
            schema_version=_int(d.get("schema_version")) or 0,
            uvmtrace_version=_str(d.get("uvmtrace_version")),
            command=command,
            command_rewritten=tuple(map(str, rewritten)) if isinstance(rewritten, list) else (),
            exit_code=_int(d.get("exit_code")),
            ended="exit_code" in d,
            anchor={k: v for k, v in _dict(d.get("anchor")).items() if _int(v) is not None},
            host=_str(d.get("host")),
            kernel=_str(d.get("kernel")),
            machine=_str(d.get("machine")),
            python=_str(d.get("python")),
            mem_total_bytes=_int(d.get("mem_total_bytes")),
            run_as=_str(d.get("run_as")),
            gpu=Gpu.from_json(d.get("gpu")),
            cgroup_version=version if isinstance(version, str | int) else None,
            cgroups=cgroups,
            target_cgroups=_ints(d.get("target_cgroups")),
            probes={str(k): ProbeState.from_json(v) for k, v in _dict(d.get("probes")).items()},
            memcg_variant=_str(d.get("memcg_variant")),
            lost=_dict(d.get("lost")),
            bucket_ns=_int(d.get("bucket_ns")),
            raw=_bool(d.get("raw"), True),
            page_size=_int(d.get("page_size")) or 4096,
            interval_s=float(interval) if isinstance(interval, int | float) else None,
            not_traced=not_traced,
            cleanup=tuple(str(x) for x in d.get("cleanup") or [] if x),
            container=Container.from_json(d.get("container")),
            attach=Attach.from_json(d.get("attach")),
            shim=_dict(d.get("shim")),
            recovered=_bool(d.get("recovered")),
            recovered_torn_bytes=_int(d.get("recovered_torn_bytes")) or 0,
            reclaim_before_sizing=d.get("reclaim_before_sizing")
            if isinstance(d.get("reclaim_before_sizing"), dict)
            else None,
            host_paths={str(k): str(v) for k, v in _dict(d.get("host_paths")).items()},
            memory_limit=_int(d.get("memory_limit")),
            error=_str(d.get("error")),
            nvml_notes=tuple(str(x) for x in d.get("nvml_notes") or []),
            signals_forwarded=tuple(str(x) for x in d.get("signals_forwarded") or []),
            extra={k: v for k, v in d.items() if k not in _TYPED},
        )
