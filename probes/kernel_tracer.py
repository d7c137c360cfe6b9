"""KernelTracer: compile and attach the probes, scope them, and drain events as Arrow batches.

One BPF program holds every concern (one compile); each probe's attachments are made one by one
so a probe that cannot attach is recorded with its reason while the others run. The compile and
the attachments run in a short-lived child (probes/loader_child.py) that hands the recorder the
fds: the recorder never loads libbcc and its LLVM (their ~150 MB would stay for the whole run).
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import os
import select
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from uvmtrace.host import btf, cgroupfs
from uvmtrace.host.bcc import import_bcc
from uvmtrace.probes import (
    aggmap,
    bpfsource,
    capabilities,
    decode,
    event_dtypes,
    kernlayout,
    loader_child,
    progstats,
)
from uvmtrace.probes.aggmap import AggDrainer
from uvmtrace.probes.bpfmaps import BpfMap
from uvmtrace.probes.event_dtypes import Config
from uvmtrace.probes.pathres import PathResolver
from uvmtrace.probes.plan import ProbePlan, plan
from uvmtrace.probes.registry import ALL_PROBES, LOST_SLOTS, PROBES, Aggregation, Attachment, Ring
from uvmtrace.probes.ringbuf import RingReader
from uvmtrace.recording.errors import UserError

# the scope and bookkeeping maps of scope.bpf.h the recorder reads or writes
_SCOPE_MAPS = ("config", "pids", "cg_targets", "lost")


def _probe_maps() -> list[str]:
    """Every ring, aggregation hash and slot array the registry names."""
    out = []
    for probe in PROBES.values():
        if probe.ring is not None:
            out.append(probe.ring.map)
        if probe.agg is not None:
            out += [probe.agg.map, probe.agg.slots]
    return out


@dataclass
class ProbeState:
    attached: bool = False
    variant: str = "tracepoint"
    why: str = ""
    attach: str = ""  # hot probes: "raw_tracepoint" or "tracepoint" (classic), and why
    attach_why: str = ""
    links: list[Attachment] = field(default_factory=list)


def monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # = bpf_ktime_get_ns()


class KernelTracer:
    def __init__(
        self,
        *,
        raw: bool = False,
        ringbuf_pages: int = bpfsource.RING_PAGES,
        bucket_ns: int = 100_000_000,
        probes: set[str] | None = None,
        memcg_events: bool | None = None,
    ) -> None:
        """memcg_events: attach memcg:count_memcg_events (vm events per cgroup: PGFAULT,
        PGMAJFAULT, ...). Default: only with `raw`; aggregated, its ~2.5 updates per anonymous
        fault cost more than the page_fault probe's counts that PGFAULT repeats."""
        wanted = set(ALL_PROBES if probes is None else probes)
        unknown = wanted - ALL_PROBES
        if unknown:
            known = ", ".join(sorted(ALL_PROBES))
            raise UserError(f"unknown probe(s) {', '.join(sorted(unknown))}; known: {known}")
        if bucket_ns < 1_000_000:
            raise UserError(f"aggregation bucket must be at least 1 ms, not {bucket_ns} ns")
        self.raw = raw
        self.memcg_events = raw if memcg_events is None else memcg_events
        self.ringbuf_pages = bpfsource.check_ring_pages(ringbuf_pages)
        self.bucket_ns = bucket_ns
        self.wanted = wanted | {"proc"}  # scope needs the process tree
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        self.states: dict[str, ProbeState] = {}
        self.memcg_variant = "sampling"
        self.memcg_why = ""
        self._bpf = None  # the BCC object, in the loader child only
        self._offsets: dict[str, int] = {}  # struct offsets for the raw programs (from BTF)
        self._loaded: loader_child.LoadedProbes | None = None  # what the recorder holds
        self._rings: dict[str, tuple[Ring, RingReader]] = {}  # by probe
        self._aggs: dict[str, tuple[Aggregation, AggDrainer]] = {}  # by probe
        self._pending_pids: list[int] = []
        self._pending_cgroups: list[int] = []
        self._watch = False
        self._cgroups: dict[int, dict] = {}
        self._hierarchies = cgroupfs.hierarchy_names()
        self._ctx: decode.Context | None = None
        self._paths = PathResolver()
        self._lost_final: dict[str, int] | None = None
        self._explicit_cgroups: set[int] = set()
        self._forgotten: set[int] = set()
        self._poller = select.poll()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        blockers = capabilities.start_blockers()  # what `uvmtrace doctor` blocks on, too
        if blockers:
            raise UserError("; ".join(blockers.values()))
        names = decode.ItemNames(self.page_size)
        self._ctx = decode.Context(names, self.page_size, self._paths, self._hierarchies)
        plans = self._plan()
        fallback = {name: p.classic for name, p in plans.items() if p.classic}
        self._offsets = kernlayout.raw_layout().defines
        self._loaded = loader_child.load(self, plans, fallback, [*_probe_maps(), *_SCOPE_MAPS])
        # The parsed vmlinux BTF (~50 MB of Python objects) was needed only for the plan.
        btf.read.cache_clear()
        _return_freed_heap()
        self._set_config(Config.WATCH_CGROUPS, int(self._watch))
        self._set_config(Config.MEMORY_HIERARCHY, cgroupfs.memory_hierarchy_id())
        # The tracer never traces itself: its own charges (spool, samples) would pollute the run.
        self._set_config(Config.SELF, os.getpid())
        self._open_readers()
        for pid in self._pending_pids:
            self.add_pid(pid)
        for cgid in self._pending_cgroups:
            self.add_cgroup(cgid)

    def loader_request(self) -> dict:
        """What the loader child needs to build this tracer's BPF text (see load_here)."""
        return {
            "kwargs": {
                "raw": self.raw,
                "ringbuf_pages": self.ringbuf_pages,
                "bucket_ns": self.bucket_ns,
                "probes": self.wanted,
                "memcg_events": self.memcg_events,
            },
            "states": self.states,
            "memcg_variant": self.memcg_variant,
            "memcg_why": self.memcg_why,
            "offsets": self._offsets,
        }

    @classmethod
    def from_loader_request(cls, request: dict) -> KernelTracer:
        tracer = cls(**request["kwargs"])
        tracer.states = request["states"]
        tracer.memcg_variant = request["memcg_variant"]
        tracer.memcg_why = request["memcg_why"]
        tracer._offsets = request["offsets"]
        return tracer

    def load_here(self, plans: dict[str, ProbePlan], fallback: dict) -> object:
        """Compile and attach `plans` in this process (the loader child); returns the BCC
        object. `fallback`: the classic attachments of a probe planned as raw tracepoints."""
        bcc = import_bcc()
        self._bpf = self._compile(bcc, plans)
        for name, p in plans.items():
            self._attach(name, p.attachments)
            state = self.states[name]
            if not state.attached and name in fallback:
                # The kernel refused the raw attachment: the classic programs are compiled too.
                state.attach, state.attach_why = "tracepoint", f"raw attach failed: {state.why}"
                state.why = p.why
                self._attach(name, fallback[name])
        if not any(s.attached for s in self.states.values()):
            whys = "; ".join(f"{n}: {s.why}" for n, s in self.states.items())
            self._bpf.cleanup()
            raise UserError(f"no kernel probe could attach ({whys})")
        return self._bpf

    def _plan(self) -> dict[str, ProbePlan]:
        """The probes to compile and attach (plan.py, as doctor shows it); the states of all."""
        plans = plan(self.wanted, extras=self.memcg_events)
        memcg = plans.get("memcg")
        self.memcg_variant = memcg.variant if memcg is not None else "sampling"
        self.memcg_why = memcg.why if memcg is not None else ""
        for name, p in plans.items():
            self.states[name] = ProbeState(
                variant=p.variant, why=p.why, attach=p.attach, attach_why=p.attach_why
            )
        return {name: p for name, p in plans.items() if p.available}

    def _compile(self, bcc, plan: dict[str, ProbePlan]):
        def build(names):
            text = bpfsource.bpf_text(
                [src for name in names for src in plan[name].sources],
                raw=self.raw,
                ringbuf_pages=self.ringbuf_pages,
                bucket_ns=self.bucket_ns,
                small_pages=bpfsource.SMALL_RING_PAGES,
                offsets=self._offsets,
            )
            return bcc.BPF(text=text.encode(), cflags=bpfsource.cflags())

        try:
            return build(plan)
        except Exception:
            pass
        # Find the probe that does not compile here (rare: a tracepoint format BCC cannot
        # turn into a struct); the others still run.
        good = []
        for name in list(plan):
            try:
                build([*good, name]).cleanup()
                good.append(name)
            except Exception as exc:
                self.states[name].why = f"BPF compile failed: {str(exc).splitlines()[0]}"
                del plan[name]
        try:
            return build(good)
        except Exception as exc:
            raise UserError(
                f"BPF programs do not compile ({exc}); are kernel headers installed? "
                "apt-get install linux-headers-$(uname -r)"
            ) from None

    def _attach(self, name: str, atts: tuple[Attachment, ...]) -> None:
        state = self.states[name]
        skipped = []
        for att in atts:
            try:
                if att.kind == "kprobe":
                    self._bpf.attach_kprobe(event=att.target.encode(), fn_name=att.fn.encode())
                elif att.kind == "raw_tracepoint":
                    tp = capabilities.event_of(att).encode()
                    self._bpf.attach_raw_tracepoint(tp=tp, fn_name=att.fn.encode())
                else:
                    self._bpf.attach_tracepoint(tp=att.target.encode(), fn_name=att.fn.encode())
                state.links.append(att)
            except Exception as exc:
                why = f"{att.target}: {str(exc).splitlines()[0] if str(exc) else 'failed'}"
                if not att.optional:
                    self._detach(state)
                    state.why = why
                    return
                skipped.append(why)
        state.attached = True
        if skipped:
            state.why = "; ".join(["without " + s for s in skipped])

    def _detach(self, state: ProbeState) -> None:
        for att in state.links:
            try:
                if att.kind == "kprobe":
                    self._bpf.detach_kprobe(event=att.target.encode())
                elif att.kind == "raw_tracepoint":
                    self._bpf.detach_raw_tracepoint(tp=capabilities.event_of(att).encode())
                else:
                    self._bpf.detach_tracepoint(tp=att.target.encode())
            except Exception:
                pass  # already gone: nothing left to stop
        state.links.clear()

    def _map(self, name: str) -> BpfMap:
        assert self._loaded is not None
        return self._loaded.maps[name]

    def _open_readers(self) -> None:
        assert self._loaded is not None
        for name, state in self.states.items():
            if not state.attached:
                continue
            ring, agg = PROBES[name].ring, PROBES[name].agg
            if ring is not None and (self.raw or not ring.raw_only):
                table = self._map(ring.map)
                pages = bpfsource.SMALL_RING_PAGES if ring.small else self.ringbuf_pages
                self._rings[name] = (ring, RingReader(table.fd, pages * self.page_size, ring.dtype))
                self._poller.register(table.fd, select.POLLIN)
            if agg is not None and not (self.raw and agg.aggregated_only):
                drainer = AggDrainer(self._map(agg.map), agg.dtype, bpfsource.MAX_AGG)
                self._aggs[name] = (agg, drainer)

    def _set_config(self, slot: Config, value: int) -> None:
        if self._loaded is not None:
            self._map("config").update(_u32(int(slot)), value.to_bytes(8, "little"))

    # -- scope -----------------------------------------------------------------------------
    def adopt_next_child(self) -> None:
        """Trace the next process this process forks from its first instruction on: call it
        right before forking the command (what runs between fork and `add_pid` faults too)."""
        self._set_config(Config.ADOPT_CHILD_OF, os.getpid())

    def add_pid(self, pid: int) -> None:
        """Trace `pid` and its descendants (existing ones now, new ones as they fork)."""
        if self._loaded is None:
            self._pending_pids.append(pid)
            return
        pids = self._map("pids")
        scope = np.zeros(1, event_dtypes.PID_SCOPE)
        scope["root"] = pid
        for p in [pid, *descendants(pid)]:
            pids.update(_u32(p), scope.tobytes())

    def add_cgroup(self, cgroup_id: int) -> None:
        """Keep every memcg event of this memory cgroup (id = its directory's inode)."""
        self._explicit_cgroups.add(cgroup_id)
        self._forgotten.discard(cgroup_id)
        if self._loaded is None:
            self._pending_cgroups.append(cgroup_id)
            return
        self._map("cg_targets").update(_u64(cgroup_id), b"\x01")
        found = cgroupfs.find_cgroup(cgroup_id)
        if found:
            rel, hierarchy = found
            self._cgroups[cgroup_id] = {"path": rel, "hierarchy": hierarchy, "target": True}
            for aid, anc in cgroupfs.ancestor_ids(rel).items():
                self._cgroups.setdefault(aid, {"path": anc, "hierarchy": hierarchy})

    def watch_new_cgroups(self, on: bool = True) -> None:
        """Make memory cgroups created from now on targets (a container's cgroup); off: stop
        adding them (those added so far stay until forget_cgroup)."""
        self._watch = on
        self._set_config(Config.WATCH_CGROUPS, int(on))

    def watched_cgroups(self) -> set[int]:
        """Target cgroups the kernel added because they were created while watching (not
        through add_cgroup); read from the kernel's map, so none is missed that the proc
        stream has not delivered yet."""
        if self._loaded is None:
            return set()
        keys = {int.from_bytes(k, "little") for k in self._map("cg_targets")}
        return keys - self._explicit_cgroups

    def forget_cgroup(self, cgroup_id: int) -> None:
        """Stop keeping this cgroup's charges, and stop tracing the processes adopted as its
        members (with the children they forked). Sums already started for them end with their
        time bucket."""
        self._explicit_cgroups.discard(cgroup_id)
        self._forgotten.add(cgroup_id)
        entry = self._cgroups.get(cgroup_id)
        if entry is not None:
            entry["target"] = False
            entry["forgotten"] = True
        if self._loaded is None:
            if cgroup_id in self._pending_cgroups:
                self._pending_cgroups.remove(cgroup_id)
            return
        self._map("cg_targets").delete(_u64(cgroup_id))  # False: not a target (any more)
        # After the target is gone nothing new is adopted through it: sweep who was.
        pids = self._map("pids")
        for pid, value in pids.items():
            scope = np.frombuffer(value, event_dtypes.PID_SCOPE, count=1)
            if int(scope["via_cgroup"][0]) == cgroup_id:
                pids.delete(pid)  # False: exited meanwhile

    # -- draining --------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 100) -> list[pa.RecordBatch]:
        if self._loaded is None:
            return []
        if timeout_ms > 0 and not any(r.available() for _, r in self._rings.values()):
            self._poller.poll(timeout_ms)
        self._learn_filemap_paths()
        return self._drain(final=False)

    def _learn_filemap_paths(self) -> None:
        """Resolve the files the page cache slots are summing now, while their readers still
        hold them open: a slot reaches the hash only when evicted, or at stop, when the command
        may be gone. Reads the slots racily, which is harmless: only keys are used."""
        if "filemap" not in self._aggs:
            return
        keys, _vals = self._slot_entries(self._aggs["filemap"][0])
        if keys.size:
            dev = decode.kernel_dev_to_user(keys["dev"].astype(np.uint64))
            self._paths.files(keys["pid"], dev, keys["ino"])

    def page_cache_pending(self) -> list[pa.RecordBatch]:
        """Page-cache rows still summed in the per-CPU slots (not yet drained): what a file read
        just now added. A snapshot for a live decision (reclaim before sizing); the same pages
        reach the recording later, through poll() or stop()."""
        if self._loaded is None or "filemap" not in self._aggs:
            return []
        agg = self._aggs["filemap"][0]
        keys, vals = self._slot_entries(agg)
        if not keys.size:
            return []
        roots, self._paths.search_roots = self._paths.search_roots, []  # the program waits
        try:
            return agg.decode(self._decode_context(), keys, vals)
        finally:
            self._paths.search_roots = roots

    def search_files_under(self, *roots: str) -> None:
        """Where the page cache of files whose processes have gone is looked for by inode."""
        self._paths.search_roots = [os.path.abspath(r) for r in roots]

    def host_path(self, path: str) -> str | None:
        """The host's path of a file a container process sees at `path` (its overlay layer)."""
        return self._paths.host_paths.get(path)

    def stop(self) -> list[pa.RecordBatch]:
        if self._loaded is None:
            return []
        misses = self._recursion_misses()  # before detaching: the programs are still loaded
        self._loaded.detach()
        for state in self.states.values():
            state.links.clear()
        self._paths.allow_search()
        batches = self._drain(final=True)
        self._lost_final = {**self._read_lost(), **self._recursion_misses(misses)}
        for _, reader in self._rings.values():
            reader.close()
        self._rings.clear()
        self._aggs.clear()
        self._loaded.close()
        self._loaded = None
        return batches

    def _drain(self, *, final: bool) -> list[pa.RecordBatch]:
        ctx = self._decode_context()
        out: list[pa.RecordBatch] = []
        for name, (ring, reader) in self._rings.items():
            rec = reader.drain()
            if rec.size:
                if name == "proc":
                    self._learn_cgroups(rec)
                out.extend(ring.decode(ctx, rec))
        for agg, drainer in self._aggs.values():
            keys, vals = drainer.drain()
            if keys.size:
                out.extend(agg.decode(ctx, keys, vals))
            if final:  # the probes are detached: what the per-CPU slots still hold
                keys, vals = self._slot_entries(agg)
                if keys.size:
                    out.extend(agg.decode(ctx, keys, vals))
        self._paths.forget_maps()
        return out

    def _decode_context(self) -> decode.Context:
        assert self._ctx is not None, "started"
        return self._ctx

    def _slot_entries(self, agg: Aggregation) -> tuple[np.ndarray, np.ndarray]:
        slots = aggmap.read_slots(self._map(agg.slots), agg.nslots)
        return aggmap.slot_entries(slots, agg.dtype, agg.slot_fields)

    def _learn_cgroups(self, rec: np.ndarray) -> None:
        """The cgroups created while recording (cgroup_mkdir), for the metadata."""
        for r in rec[rec["kind"] == event_dtypes.PROC_MKDIR]:
            cgid = int(r["cgroup_id"])
            self._cgroups[cgid] = {
                "path": r["text"].decode("utf-8", "replace"),
                "hierarchy": self._hierarchies.get(int(r["root"]), str(int(r["root"]))),
                "created": True,
                **({"target": False, "forgotten": True} if cgid in self._forgotten else {}),
            }

    def lost(self) -> int:
        """Events lost so far, all probes together (for a live status line)."""
        if self._loaded is None:
            return 0
        return sum(self._read_lost().values()) + sum(self._recursion_misses().values())

    def _recursion_misses(self, last: dict[str, int] | None = None) -> dict[str, int]:
        """Program runs the kernel skipped, per probe: "<probe>_nested" (see progstats).
        `last`: an earlier reading, kept where the programs can no longer be asked."""
        progs = self._loaded.progs if self._loaded is not None else {}
        out = dict(last or {})
        for name, state in self.states.items():
            total = None
            for att in state.links:
                fd = progs.get(att.fn)
                n = progstats.recursion_misses(fd) if fd is not None else None
                if n is not None:
                    total = (total or 0) + n
            if total is not None:
                out[f"{name}_nested"] = total
        return out

    def _read_lost(self) -> dict[str, int]:
        table = self._map("lost")
        out = {}
        for i, name in enumerate(LOST_SLOTS):
            per_cpu = np.frombuffer(table.lookup(_u32(i)) or b"", "<u8")
            out[name] = int(per_cpu.sum())
        return out

    def metadata(self) -> dict:
        lost = (
            self._lost_final
            if self._loaded is None
            else {**self._read_lost(), **self._recursion_misses()}
        )
        return {
            "probes": {
                n: {
                    "attached": s.attached,
                    "variant": s.variant,
                    "why": s.why,
                    **({"attach": s.attach, "attach_why": s.attach_why} if s.attach else {}),
                }
                for n, s in self.states.items()
            },
            "memcg_variant": self.memcg_variant,
            "lost": lost or {},
            "cgroups": {str(k): v for k, v in self._cgroups.items()},
            # overlayfs files (a container's image): path as the container sees it -> host file
            "host_paths": dict(self._paths.host_paths),
            "page_size": self.page_size,
            "raw": self.raw,
            "bucket_ns": self.bucket_ns,
        }


def _return_freed_heap() -> None:
    """Give the heap freed after start-up back to the system (glibc keeps it otherwise)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ct.CDLL(None).malloc_trim(0)


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def descendants(pid: int) -> list[int]:
    """Living descendants of `pid`, from /proc (ppid links)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out
