"""`uvmtrace doctor`: its JSON, its exit code, and that what it says about this host matches what
the kernel itself shows (tracefs's event list, kprobe_events, a real BCC load, /proc/mounts)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from uvmtrace.doctor import REQUIRED
from uvmtrace.doctor.plan import probe_tracepoints

STATUSES = {"ok", "missing", "unavailable"}


def run_doctor(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    cmd = [*prefix, sys.executable, "-m", "uvmtrace.cli", "doctor", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def doctor_json() -> tuple[int, dict[str, Any]]:
    proc = run_doctor("--json")
    return proc.returncode, json.loads(proc.stdout)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in report["checks"]}


def test_json_has_one_entry_per_check_each_with_name_status_detail_fix(doctor_json) -> None:
    _rc, report = doctor_json
    names = [c["name"] for c in report["checks"]]
    assert len(names) == len(set(names)), "a check appears twice"
    for c in report["checks"]:
        assert set(c) == {"name", "status", "detail", "fix"}, c
        assert c["status"] in STATUSES, c
        assert c["detail"], f"{c['name']} says nothing"
        if c["status"] == "missing":
            assert c["fix"], f"{c['name']} is missing but says no fix"
    expected = {
        "root", "bpf() syscall", "tracefs", "kprobes", "fentry", "BTF", "kernel headers",
        "BCC", "BCC compiles", "cgroups", "memcg variant", "C compiler", "Docker",
        "CUDA driver", "NVML",
    }  # fmt: skip
    expected |= {f"tracepoint {tp}" for tp in probe_tracepoints()}
    assert expected <= set(names), expected - set(names)
    assert isinstance(report["can_record"], bool)


def test_exit_code_is_zero_exactly_when_recording_is_possible(doctor_json) -> None:
    rc, report = doctor_json
    required_ok = all(by_name(report)[n]["status"] == "ok" for n in REQUIRED)
    assert report["can_record"] == required_ok
    assert rc == (0 if report["can_record"] else 1)
    assert report["blockers"] == [n for n in REQUIRED if by_name(report)[n]["status"] != "ok"]


def test_this_host_can_record_and_doctor_agrees(need_bpf, doctor_json) -> None:
    rc, report = doctor_json
    checks = by_name(report)
    assert rc == 0 and report["can_record"], report["blockers"]
    for name in ("root", "bpf() syscall", "tracefs", "BTF", "BCC", "BCC compiles"):
        assert checks[name]["status"] == "ok", checks[name]


def test_tracepoints_match_the_kernels_own_event_list(need_root, doctor_json) -> None:
    _rc, report = doctor_json
    tracefs = Path(by_name(report)["tracefs"]["detail"].removeprefix("mounted at "))
    available = set((tracefs / "available_events").read_text().split())
    for c in report["checks"]:
        if c["name"].startswith("tracepoint "):
            tp = c["name"].removeprefix("tracepoint ")
            assert (c["status"] == "ok") == (tp in available), c


def test_kprobes_are_ok_only_where_the_kernel_has_kprobe_events(need_root, doctor_json) -> None:
    _rc, report = doctor_json
    kprobes = by_name(report)["kprobes"]
    has_kprobe_events = Path("/sys/kernel/tracing/kprobe_events").exists()
    assert (kprobes["status"] == "ok") == has_kprobe_events, kprobes
    if not has_kprobe_events:  # this dev machine: CONFIG_KPROBES is off
        assert kprobes["status"] == "unavailable"
        assert "KPROBES" in kprobes["detail"] or "kprobe" in kprobes["detail"]


def test_fentry_verdict_matches_what_bcc_can_attach(need_bpf, doctor_json) -> None:
    """BCC's own support_kfunc() only looks for a kernel symbol; a real KFUNC_PROBE load is the
    ground truth doctor must agree with."""
    _rc, report = doctor_json
    fentry = by_name(report)["fentry"]
    probe = (
        "from uvmtrace.host.bcc import import_bcc\n"
        "b = import_bcc().BPF(text='KFUNC_PROBE(vfs_read) { return 0; }')\n"
        "print('attached')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    bcc_attaches = "attached" in proc.stdout
    assert (fentry["status"] == "ok") == bcc_attaches, (fentry, proc.stderr[-500:])
    if not bcc_attaches:
        assert re.search(r"\bE[A-Z]+\b", fentry["detail"]), fentry  # names the kernel's errno


def test_cgroup_version_matches_the_mounts(doctor_json) -> None:
    _rc, report = doctor_json
    cgroups = by_name(report)["cgroups"]
    fstypes = {line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()}
    v1_memory = Path("/sys/fs/cgroup/memory/memory.stat").exists()
    expected = {
        (True, True): "hybrid",
        (True, False): "v2",
        (False, True): "v1",
    }[("cgroup2" in fstypes, v1_memory)]
    assert cgroups["detail"].startswith(expected), cgroups


def test_no_gpu_here_means_cuda_unavailable_not_a_blocker(doctor_json) -> None:
    _rc, report = doctor_json
    checks = by_name(report)
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("this host has an NVIDIA GPU")
    assert checks["CUDA driver"]["status"] == "unavailable"
    assert "CUDA driver" not in report["blockers"]


def test_docker_verdict_matches_docker_info(doctor_json) -> None:
    _rc, report = doctor_json
    docker = by_name(report)["Docker"]
    answers = (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    )
    assert (docker["status"] == "ok") == answers, docker


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_root_without_capabilities_cannot_record_and_is_told_why(need_bpf) -> None:
    """uid 0 with an empty capability set (an unprivileged container's root): bpf() answers EPERM,
    doctor names that and exits 1."""
    proc = run_doctor("--json", prefix=("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"))
    report = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert not report["can_record"]
    bpf = by_name(report)["bpf() syscall"]
    assert bpf["status"] == "missing" and "EPERM" in bpf["detail"] and bpf["fix"]
    assert "bpf() syscall" in report["blockers"]


def test_the_terminal_view_is_one_table_and_a_verdict(doctor_json) -> None:
    proc = run_doctor()
    _rc, report = doctor_json
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["check", "status"]
    verdict = "recording is possible" if report["can_record"] else "recording is not possible"
    assert verdict in lines[-1]
    assert "Traceback" not in proc.stderr


def test_doctor_is_quick(need_bpf) -> None:
    """Everything a user waits for, BCC compile included, stays interactive."""
    started = time.monotonic()
    assert run_doctor("--json").returncode == 0
    assert time.monotonic() - started < 30
