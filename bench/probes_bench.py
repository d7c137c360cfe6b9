"""Probes on fault-bound work: touch fresh anonymous memory and read a file into the page cache,
bare vs under `uvmtrace record` (aggregated, `--raw`) vs two peers that do less with the same
tracepoints: `perf stat -e` (kernel counters of the command's own events) and `bpftrace`
counting every hit into a map. Every mode runs once per repetition, interleaved, so drift hits
them alike. The workload times itself (its own CPU time: the probes run in its context), so the
recorder's start-up (BPF compilation) is not counted, only what the probes add to the work.

Then one profiled run per workload (`kernel.bpf_stats_enabled`): which BPF programs ran, how
often per page, and what each run cost (run_cnt, run_time_ns from `bpftool prog show`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import UVMTRACE, Figure, median, parse_kv
from uvmtrace.host import cgroupfs, tracefs
from uvmtrace.probes.registry import PROBES

RECORD = [*UVMTRACE, "record", "-q", "--no-shim", "--force"]  # each repetition rewrites -o
# The tracepoints aggregated recording keeps busy on these workloads (count_memcg_events is
# only attached with --raw): the peers count exactly these.
HOT = (
    PROBES["page_fault"].variants[0].attachments
    + tuple(a for a in PROBES["memcg"].variants[0].attachments if not a.optional)
    + PROBES["filemap"].variants[0].attachments
)
GOALS = {"anon": 1.05, "read": 1.10}
SETUP_HINT = "sudo scripts/setup-host --bench installs it"
# Controls. `record` runs the command in a fresh memory cgroup of its own (exact attribution):
# the bare workload in such a cgroup, made the same way, shows what that costs without uvmtrace;
# `record --no-cgroup` shows the probes without it.
IN_CGROUP = "bare in a fresh cgroup"
NO_CGROUP = "aggregated --no-cgroup"

# Run inside `uvmtrace record`: the workload, with the programs' statistics before and after.
_PROFILED = """
import json, subprocess, sys
def progs():
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True)
    return {p["id"]: p for p in json.loads(out.stdout or "[]") if "run_cnt" in p}
before = progs()
work = subprocess.run(sys.argv[2:], capture_output=True, text=True, check=True)
after = progs()
rows = []
for pid, p in after.items():
    b = before.get(pid, {})
    runs, ns = p["run_cnt"] - b.get("run_cnt", 0), p["run_time_ns"] - b.get("run_time_ns", 0)
    if runs:
        rows.append({"name": p.get("name", "?"), "type": p["type"], "runs": runs, "ns": ns})
open(sys.argv[1], "w").write(json.dumps(rows))
print(work.stdout, end="")
"""


def peers() -> tuple[dict[str, list[str] | None], list[str]]:
    """The peers found here (mode -> argv prefix), and a line for each one missing."""
    events = [a.target for a in HOT if tracefs.tracepoint_exists(a.target)]
    found: dict[str, list[str] | None] = {}
    missing = []
    if shutil.which("perf"):
        found["perf stat"] = ["perf", "stat", "-x,", "-o", os.devnull,
                              *(x for e in events for x in ("-e", e)), "--"]  # fmt: skip
    else:
        missing.append(f"peer perf stat: missing (Debian linux-perf; {SETUP_HINT})")
    if shutil.which("bpftrace"):
        probes = ",".join(f"tracepoint:{e}" for e in events)
        found["bpftrace"] = ["bpftrace", "-q", "-e", probes + " { @[probe] = count(); }", "-c"]
    else:
        missing.append(f"peer bpftrace: missing (Debian bpftrace; {SETUP_HINT})")
    return found, missing


def _argv(mode: str, prefix: list[str] | None, work: list[str], out: Path) -> list[str]:
    if prefix is None:
        return work
    if mode == "bpftrace":  # -c takes one string, split on spaces (no spaces in our paths)
        return [*prefix, " ".join(work)]
    if mode in ("aggregated", "raw"):
        return [*prefix, "-o", str(out), "--", *work]
    return [*prefix, *work]


def _run(argv: list[str], out: Path, fresh_cgroup: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the workload itself)."""
    cg = None
    if fresh_cgroup and (h := cgroupfs.memory_hierarchy()) is not None:
        cg = cgroupfs.make_run_cgroup(h, f"uvmtrace-bench-{os.getpid()}")

    def join() -> None:  # in the child, before exec: the workload starts in the cgroup
        if cg is not None:
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    try:
        r = subprocess.run(argv, capture_output=True, text=True, preexec_fn=join)
    finally:
        if cg is not None:
            cgroupfs.remove_cgroup(cg)
    out.unlink(missing_ok=True)
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    kv = parse_kv(r.stdout)
    return kv["elapsed_ns"] / 1e9, kv["cpu_ns"] / 1e9


def profile(workdir: Path, work: list[str], label: str, pages: int) -> list[Figure]:
    """One aggregated recording with the kernel's BPF run statistics on."""
    if not shutil.which("bpftool"):
        return [Figure(f"profile {label}", None, 0, "", note=f"bpftool missing; {SETUP_HINT}")]
    stats = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = stats.read_text().strip()
    rows_file, out = workdir / "profile.json", workdir / "profile.parquet"
    stats.write_text("1")
    try:
        cmd = [sys.executable, "-c", _PROFILED, str(rows_file), *work]
        subprocess.run([*RECORD, "-o", str(out), "--", *cmd], capture_output=True, check=True)
    finally:
        stats.write_text(old)
        out.unlink(missing_ok=True)
    rows = json.loads(rows_file.read_text())
    figures = []
    for r in sorted(rows, key=lambda r: -r["ns"]):
        figures.append(Figure(
            f"profile {label}: {r['name']} ({r['type']})", None, r["ns"] / pages, "ns/page",
            note=f"{r['runs'] / pages:.3f} runs/page, {r['ns'] / r['runs']:.0f} ns/run, "
                 f"{r['runs']:,} runs",
        ))  # fmt: skip
    ns, runs = sum(r["ns"] for r in rows), sum(r["runs"] for r in rows)
    figures.append(Figure(f"profile {label}: all programs", None, ns / pages, "ns/page",
                          note=f"{runs / pages:.3f} runs/page"))  # fmt: skip
    return figures


def run(workdir: Path, faulter: Path, reps: int, anon_bytes: int, file_bytes: int) -> list[Figure]:
    data = workdir / "probe-bench.bin"
    with open(data, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(file_bytes >> 20):
            f.write(block)
    page = os.sysconf("SC_PAGE_SIZE")
    exe = str(faulter)
    workloads = {
        "anon": (f"touch {anon_bytes >> 30} GiB fresh anon", [exe, "anon", str(anon_bytes)],
                 anon_bytes // page),
        "read": (f"read {file_bytes >> 30} GiB file (cold cache)", [exe, "read", str(data)],
                 file_bytes // page),
    }  # fmt: skip
    found, missing = peers()
    modes: dict[str, list[str] | None] = {
        "bare": None,
        IN_CGROUP: None,
        "aggregated": RECORD,
        NO_CGROUP: [*RECORD, "--no-cgroup"],
        "raw": [*RECORD, "--raw"],
        **found,
    }
    figures = [Figure(m, None, 0, "", note="not measured") for m in missing]
    out = workdir / "probe-bench.parquet"
    for kind, (label, work, pages) in workloads.items():
        wall: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        for rep in range(reps):
            for mode, prefix in modes.items():
                if mode == "raw" and rep % 3:
                    continue  # reported, no goal: a third of the repetitions
                w, c = _run(_argv(mode, prefix, work, out), out, fresh_cgroup=mode == IN_CGROUP)
                wall[mode].append(w)
                cpu[mode].append(c)
        # CPU time of the workload is what the in-kernel probes add to it (they run in its
        # context); wall time also moves with whatever else this shared machine does.
        med = {m: median(cpu[m]) for m in modes}
        walls = {m: median(wall[m]) for m in modes}
        bare, agg = med["bare"], med["aggregated"]
        goal = GOALS[kind]
        figures.append(Figure(
            f"probes aggregated: {label} (workload CPU)", bare, agg, "s", goal=f"< {goal:.2f}x",
            met=agg / bare < goal,
            note=f"median of {reps}; wall {walls['aggregated']:.3f} vs {walls['bare']:.3f} s",
        ))  # fmt: skip
        figures.append(Figure(f"probes raw: {label} (workload CPU)", bare, med["raw"], "s",
                              note=f"reported as is; wall {walls['raw']:.3f} s"))  # fmt: skip
        figures.append(Figure(
            f"control, {IN_CGROUP}: {label}", bare, med[IN_CGROUP], "s",
            note="no uvmtrace: what the command's own memory cgroup costs here",
        ))  # fmt: skip
        figures.append(Figure(f"probes {NO_CGROUP}: {label}", bare, med[NO_CGROUP], "s",
                              note="the probes without the command's own cgroup"))  # fmt: skip
        for peer in found:
            figures.append(Figure(
                f"peer {peer}: {label} (workload CPU)", bare, med[peer], "s",
                note=f"counts the same {len(HOT)} tracepoints: the floor for them",
            ))  # fmt: skip
            figures.append(Figure(f"uvmtrace aggregated / {peer}: {label}", med[peer], agg, "s"))
        figures.extend(profile(workdir, work, label, pages))
    data.unlink()
    return figures
