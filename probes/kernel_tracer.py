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
from uvmtrace.probes.capabilities import Attachment
from uvmtrace.probes.pathres import PathResolver
from uvmtrace.probes.ringbuf import RingReader
from uvmtrace.recording.errors import UserError

# ring name -> (probe, record dtype); rings a probe set does not compile are skipped
RINGS = {
    "proc_rb": ("proc", event_dtypes.PROC_REC),
    "memcg_rb": ("memcg", event_dtypes.MEMCG_REC),
    "fault_rb": ("page_fault", event_dtypes.FAULT_REC),
    "mapping_rb": ("mappings", event_dtypes.MAPPING_REC),
    "query_rb": ("queries", event_dtypes.QUERY_REC),
}
AGGS = {
    "memcg_agg": ("memcg", event_dtypes.MEMCG_KEY),
    "fault_agg": ("page_fault", event_dtypes.FAULT_KEY),
    "filemap_agg": ("filemap", event_dtypes.FILEMAP_KEY),
}
# the scope and bookkeeping maps of scope.bpf.c the recorder reads or writes
_SCOPE_MAPS = ("config", "pids", "cg_targets", "lost")
_MEMCG_SLOT = np.arange(3 * event_dtypes.ITEM_SLOTS)
# aggregation hash -> (its per-CPU slot array, number of slots, slot fields -> key fields)
SLOTS: dict[str, tuple[str, int, dict[str, np.ndarray | str]]] = {
    "memcg_agg": (
        "memcg_slots",
        _MEMCG_SLOT.size,
        {
            "cgroup_id": "key2",
            "item": _MEMCG_SLOT % event_dtypes.ITEM_SLOTS,
            "kind": _MEMCG_SLOT // event_dtypes.ITEM_SLOTS,
        },
    ),
    "fault_agg": (
        "fault_slots",
        event_dtypes.FAULT_SLOTS,
        {"code": np.arange(event_dtypes.FAULT_SLOTS)},
    ),
    "filemap_agg": ("filemap_slots", 2, {"ino": "owner", "dev": "key2", "kind": np.arange(2)}),
}


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
        ringbuf_pages: int = 256,
        bucket_ns: int = 100_000_000,
        probes: set[str] | None = None,
        memcg_events: bool | None = None,
    ) -> None:
        """memcg_events: attach memcg:count_memcg_events (vm events per cgroup: PGFAULT,
        PGMAJFAULT, ...). Default: only with `raw`; aggregated, its ~2.5 updates per anonymous
        fault cost more than the page_fault probe's counts that PGFAULT repeats."""
        wanted = set(capabilities.ALL_PROBES if probes is None else probes)
        unknown = wanted - capabilities.ALL_PROBES
        if unknown:
            known = ", ".join(sorted(capabilities.ALL_PROBES))
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
        self._rings: dict[str, RingReader] = {}
        self._aggs: dict[str, AggDrainer] = {}
        self._pending_pids: list[int] = []
        self._pending_cgroups: list[int] = []
        self._watch = False
        self._cgroups: dict[int, dict] = {}
        self._hierarchies = cgroupfs.hierarchy_names()
        self._names: decode.ItemNames | None = None
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
        self._names = decode.ItemNames(self.page_size)
        plan = self._plan()
        fallback = {
            name: self._classic(name)
            for name in plan
            if self.states[name].attach == "raw_tracepoint"
        }
        wanted_maps = [*RINGS, *AGGS, *(t for t, _n, _f in SLOTS.values()), *_SCOPE_MAPS]
        self._offsets = kernlayout.raw_layout().defines
        self._loaded = loader_child.load(self, plan, fallback, wanted_maps)
        # The parsed vmlinux BTF (~50 MB of Python objects) was needed only for the plan.
        btf.read.cache_clear()
        _return_freed_heap()
        self._set_config(0, int(self._watch))
        self._set_config(1, cgroupfs.memory_hierarchy_id())
        # The tracer never traces itself: its own charges (spool, samples) would pollute the run.
        self._set_config(2, os.getpid())
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

    def load_here(self, plan: dict[str, tuple[Attachment, ...]], fallback: dict) -> object:
        """Compile and attach `plan` in this process (the loader child); returns the BCC object.
        `fallback`: the classic attachments of a probe planned as raw tracepoints."""
        bcc = import_bcc()
        self._bpf = self._compile(bcc, plan)
        for name, atts in plan.items():
            self._attach(name, atts)
            state = self.states[name]
            if not state.attached and state.attach == "raw_tracepoint":
                # The kernel refused the raw attachment: the classic programs are compiled too.
                state.attach, state.attach_why = "tracepoint", f"raw attach failed: {state.why}"
                state.why = self.memcg_why if name == "memcg" else ""
                self._attach(name, fallback[name])
        if not any(s.attached for s in self.states.values()):
            whys = "; ".join(f"{n}: {s.why}" for n, s in self.states.items())
            self._bpf.cleanup()
            raise UserError(f"no kernel probe could attach ({whys})")
        return self._bpf

    def _plan(self) -> dict[str, tuple[Attachment, ...]]:
        variant, why = capabilities.memcg_variant()
        self.memcg_variant = variant if "memcg" in self.wanted else "sampling"
        self.memcg_why = why
        plan = {}
        for name in sorted(self.wanted, key=list(capabilities.PROBES).index):
            _src, atts = capabilities.PROBES[name]
            state = ProbeState()
            if name in ("memcg", "page_fault"):
                state.attach, state.attach_why = capabilities.attach_mode(name)
            if name == "memcg":
                state.variant, state.why = variant, why
                if variant == "sampling":
                    self.states[name] = state
                    continue
                if variant != "tracepoint":
                    state.attach, state.attach_why = variant, ""
                atts = capabilities.memcg_attachments(variant, state.attach)[1]
            elif name == "page_fault":
                atts = capabilities.fault_attachments(state.attach)
            if name == "memcg" and not self.memcg_events:
                atts = tuple(a for a in atts if not a.target.endswith("count_memcg_events"))
                state.why = (state.why + "; " if state.why else "") + (
                    "without memcg:count_memcg_events (aggregated mode; --raw records it)"
                )
            required = [a for a in atts if not a.optional]
            missing = [w for a in required if (w := capabilities.attachment_missing(a))]
            if missing:
                state.why = "; ".join(missing)
                self.states[name] = state
                continue
            self.states[name] = state
            plan[name] = atts
        return plan

    def _classic(self, name: str) -> tuple[Attachment, ...]:
        if name == "memcg":
            return tuple(
                a
                for a in capabilities.MEMCG_TRACEPOINTS
                if self.memcg_events or not a.target.endswith("count_memcg_events")
            )
        return capabilities.FAULT_TRACEPOINTS

    def _sources(self, names) -> list[str]:
        files = []
        for name in names:
            if name == "proc":
                continue
            src = capabilities.PROBES[name][0]
            if name == "memcg":
                src = capabilities.memcg_attachments(self.memcg_variant, self.states[name].attach)[
                    0
                ]
                if src == "memcg_raw.bpf.c":
                    files.append("memcg_tp.bpf.c")  # the classic programs: fallback at attach
            files.append(src)
        return files

    def _compile(self, bcc, plan: dict):
        def build(names):
            text = bpfsource.bpf_text(
                self._sources(names),
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
        # Find the concern that does not compile here (rare: a tracepoint format BCC cannot
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
        attached = {n for n, s in self.states.items() if s.attached}
        for ring, (probe, dtype) in RINGS.items():
            if probe not in attached:
                continue
            table = self._loaded.maps.get(ring)
            if table is None:
                continue  # aggregated mode: no ring for this probe
            pages = (
                bpfsource.SMALL_RING_PAGES
                if ring in ("proc_rb", "query_rb")
                else (self.ringbuf_pages)
            )
            reader = RingReader(table.fd, pages * self.page_size, dtype)
            self._rings[ring] = reader
            self._poller.register(table.fd, select.POLLIN)
        for agg, (probe, dtype) in AGGS.items():
            if probe in attached and not (self.raw and probe in ("memcg", "page_fault")):
                self._aggs[agg] = AggDrainer(self._map(agg), dtype, bpfsource.MAX_AGG)

    def _set_config(self, slot: int, value: int) -> None:
        if self._loaded is not None:
            self._map("config").update(_u32(slot), value.to_bytes(8, "little"))

    # -- scope -----------------------------------------------------------------------------
    def adopt_next_child(self) -> None:
        """Trace the next process this process forks from its first instruction on: call it
        right before forking the command (what runs between fork and `add_pid` faults too)."""
        self._set_config(3, os.getpid())

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
        self._set_config(0, int(on))

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
        if timeout_ms > 0 and not any(r.available() for r in self._rings.values()):
            self._poller.poll(timeout_ms)
        self._learn_filemap_paths()
        return self._drain(final=False)

    def _learn_filemap_paths(self) -> None:
        """Resolve the files the page cache slots are summing now, while their readers still
        hold them open: a slot reaches the hash only when evicted, or at stop, when the command
        may be gone. Reads the slots racily, which is harmless: only keys are used."""
        if "filemap_agg" not in self._aggs:
            return
        keys, _vals = self._slot_entries("filemap_agg")
        if keys.size:
            dev = decode.kernel_dev_to_user(keys["dev"].astype(np.uint64))
            self._paths.files(keys["pid"], dev, keys["ino"])

    def page_cache_pending(self) -> list[pa.RecordBatch]:
        """Page-cache rows still summed in the per-CPU slots (not yet drained): what a file read
        just now added. A snapshot for a live decision (reclaim before sizing); the same pages
        reach the recording later, through poll() or stop()."""
        if self._loaded is None or "filemap_agg" not in self._aggs:
            return []
        keys, vals = self._slot_entries("filemap_agg")
        return self._agg_rows("filemap_agg", keys, vals) if keys.size else []

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
        batches = self._drain(final=True)
        self._lost_final = {**self._read_lost(), **self._recursion_misses(misses)}
        for reader in self._rings.values():
            reader.close()
        self._rings.clear()
        self._aggs.clear()
        self._loaded.close()
        self._loaded = None
        return batches

    def _drain(self, *, final: bool) -> list[pa.RecordBatch]:
        names = self._names
        assert names is not None
        out: list[pa.RecordBatch] = []
        for ring, reader in self._rings.items():
            rec = reader.drain()
            if rec.size:
                out.extend(self._ring_rows(ring, rec))
        for agg, drainer in self._aggs.items():
            keys, vals = drainer.drain()
            if keys.size:
                out.extend(self._agg_rows(agg, keys, vals))
            if final:  # the probes are detached: what the per-CPU slots still hold
                keys, vals = self._slot_entries(agg)
                if keys.size:
                    out.extend(self._agg_rows(agg, keys, vals))
        self._paths.forget_maps()
        return out

    def _slot_entries(self, agg: str) -> tuple[np.ndarray, np.ndarray]:
        table, n, fill = SLOTS[agg]
        slots = aggmap.read_slots(self._map(table), n)
        return aggmap.slot_entries(slots, AGGS[agg][1], fill)

    def _agg_rows(self, agg: str, keys: np.ndarray, vals: np.ndarray) -> list[pa.RecordBatch]:
        names = self._names
        assert names is not None
        out: list[pa.RecordBatch] = []
        if agg == "memcg_agg":
            out.extend(
                decode.memcg_rows(
                    names,
                    ts=keys["bucket"],
                    cgroup_id=keys["cgroup_id"],
                    pid=keys["pid"],
                    tid=None,
                    item=keys["item"],
                    kind=keys["kind"],
                    val=vals["sum"],
                    updates=vals["count"],
                    comm=vals["comm"],
                )
            )
        elif agg == "fault_agg":
            out.append(decode.fault_rows_agg(keys, vals))
        else:
            dev = decode.kernel_dev_to_user(keys["dev"].astype(np.uint64))
            paths = self._paths.files(keys["pid"], dev, keys["ino"])
            out.append(decode.filemap_rows(keys, vals, self.page_size, paths))
        return out

    def _ring_rows(self, ring: str, rec: np.ndarray) -> list[pa.RecordBatch]:
        names = self._names
        assert names is not None
        if ring == "proc_rb":
            for r in rec[rec["kind"] == event_dtypes.PROC_MKDIR]:
                cgid = int(r["cgroup_id"])
                self._cgroups[cgid] = {
                    "path": r["text"].decode("utf-8", "replace"),
                    "hierarchy": self._hierarchies.get(int(r["root"]), str(int(r["root"]))),
                    "created": True,
                    **({"target": False, "forgotten": True} if cgid in self._forgotten else {}),
                }
            return decode.proc_rows(rec, self._hierarchies)
        if ring == "memcg_rb":
            return decode.memcg_rows(
                names,
                ts=rec["ts"],
                cgroup_id=rec["cgroup_id"],
                pid=rec["pid"],
                tid=rec["tid"],
                item=rec["item"],
                kind=rec["kind"],
                val=rec["val"],
                updates=np.ones(rec.size, np.int64),
                comm=rec["comm"],
            )
        if ring == "fault_rb":
            return [decode.fault_rows_raw(rec)]
        if ring == "mapping_rb":
            return [decode.mapping_rows(rec, self._paths.mappings(rec))]
        return decode.query_rows(rec)

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
        for i, name in enumerate(event_dtypes.LOST_SLOTS):
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
