"""`uvmtrace doctor`: what this host can trace, what is missing, and how to fix it.

`run_doctor()` runs every check and decides whether a recording is possible: that needs root, the
bpf() syscall, tracefs, kernel BTF, a BCC that compiles, and some way to see memcg charges.
Everything else (kprobes, fentry, Docker, GPU) widens what is traced but is not required. What
the probes need is asked the way they ask it (probes/capabilities.py, probes/plan.py), so
doctor's verdict and what `record` does cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from uvmtrace.doctor import bcc_check, gpu, kernel, plan, tools
from uvmtrace.doctor.result import Check, Status, needs_root

__all__ = ["Check", "DoctorReport", "Status", "run_doctor"]

# The checks a recording cannot do without.
REQUIRED = ("root", "bpf() syscall", "tracefs", "BTF", "BCC", "BCC compiles", "memcg variant")


@dataclass(frozen=True)
class DoctorReport:
    checks: list[Check]

    @property
    def blockers(self) -> list[Check]:
        return [c for c in self.checks if c.name in REQUIRED and not c.ok]

    @property
    def can_record(self) -> bool:
        return not self.blockers

    def as_dict(self) -> dict[str, object]:
        return {
            "can_record": self.can_record,
            "blockers": [c.name for c in self.blockers],
            "checks": [c.as_dict() for c in self.checks],
        }


# What only root can try (tracefs is root's only, bpf() and kprobe_events need privileges):
# as another user each of these is one "needs root" line instead of a guess.
ROOT_ONLY = {
    "bpf() syscall": "creating a BPF map and loading a program",
    "tracefs": "tracefs and its tracepoints (readable by root only)",
    "kprobes": "creating a kprobe",
    "fentry": "loading an fentry program",
    "BCC compiles": "compiling and loading a tracepoint program",
    "memcg variant": "how memory charges would be seen (from tracefs)",
}


def run_doctor() -> DoctorReport:
    if os.geteuid() != 0:
        return _run_unprivileged()
    tracefs = kernel.find_tracefs()
    tracepoint_checks = kernel.check_tracepoints(tracefs, plan.probe_tracepoints())
    kprobes = kernel.check_kprobes(tracefs)
    cgroups = kernel.check_cgroups()
    bcc_import, bcc_imported = bcc_check.check_bcc_import()
    probe_plan, why_no_plan = plan.load_probe_plan()

    checks = [
        kernel.check_root(),
        kernel.check_bpf_syscall(),
        kernel.check_tracefs(),
        *tracepoint_checks,
        kprobes,
        kernel.check_fentry(),
        kernel.check_btf(),
        kernel.check_kernel_headers(),
        bcc_import,
        bcc_check.check_bcc_compiles()
        if bcc_imported
        else Check("BCC compiles", "missing", "BCC is not importable", bcc_check.INSTALL),
        cgroups,
        plan.memcg_variant(probe_plan, why_no_plan, cgroups),
        *plan.plan_checks(probe_plan, why_no_plan),
        tools.check_c_compiler(),
        tools.check_docker(),
        tools.check_podman(),
        *gpu.check_cuda(),
        gpu.check_nvml(),
    ]
    return DoctorReport([c for c in checks if c is not None])


def _run_unprivileged() -> DoctorReport:
    """Every check a user can do, the rest marked "needs root"; recording is not possible."""
    bcc_import, _ = bcc_check.check_bcc_import()
    checks = [
        kernel.check_root(),
        *(needs_root(name, what) for name, what in ROOT_ONLY.items()),
        kernel.check_btf(),
        kernel.check_kernel_headers(),
        bcc_import,
        kernel.check_cgroups(),
        tools.check_c_compiler(),
        tools.check_docker(),
        tools.check_podman(),
        *gpu.check_cuda(),
        gpu.check_nvml(),
    ]
    return DoctorReport([c for c in checks if c is not None])
