"""`uvmtrace doctor`'s verdict and what `record` does agree, on hosts that lack what the probes
need. The host is simulated by injecting the answers of the one place both doctor and the recorder
ask: tracefs (host/tracefs.py) and the probes' capability checks (probes/capabilities.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from uvmtrace.doctor import Check, DoctorReport, run_doctor
from uvmtrace.host import tracefs as host_tracefs
from uvmtrace.probes import capabilities
from uvmtrace.probes.kernel_tracer import KernelTracer
from uvmtrace.probes.registry import PROBES
from uvmtrace.recording.errors import UserError

NO_BTF = "cannot read kernel BTF /sys/kernel/btf/vmlinux: No such file or directory"

Host = Callable[..., None]


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Host:
    """simulate(tracefs=, btf=, memcg_tracepoints=): a root host with BPF where only the named
    things are missing; every other answer is this machine's own."""
    real_tracefs = host_tracefs.mount_point()

    def simulate(*, tracefs: bool = True, btf: bool = True, memcg_tracepoints: bool = True) -> None:
        if real_tracefs is None:
            pytest.skip("this host has no tracefs to take the other answers from")
        real_exists = host_tracefs.tracepoint_exists

        def tracepoint_exists(target: str) -> bool:
            if not tracefs or (not memcg_tracepoints and target.startswith("memcg:")):
                return False
            return real_exists(target)

        monkeypatch.setattr(host_tracefs, "mount_point", lambda: real_tracefs if tracefs else None)
        monkeypatch.setattr(host_tracefs, "tracepoint_exists", tracepoint_exists)
        monkeypatch.setattr(capabilities, "btf_missing", lambda: None if btf else NO_BTF)
        # Without memcg tracepoints, kprobes would be the next choice: absent, as on most hosts
        # that lack the tracepoints' kernel (and on this one), so the choice is sampling.
        monkeypatch.setattr(host_tracefs, "kprobes_available", lambda: False)

    return simulate


def record_start(tracer: KernelTracer) -> str | None:
    """What `record` does with the kernel probes: None when they start, else the reason it
    writes under `not_traced` (tracer/session.py records the rest without a kernel stream)."""
    try:
        tracer.start()
    except UserError as exc:
        return str(exc)
    return None


def checks(report: DoctorReport) -> dict[str, Check]:
    return {c.name: c for c in report.checks}


@pytest.mark.parametrize(
    ("missing", "requirement", "why"),
    [
        ({"btf": False}, "BTF", NO_BTF),
        ({"tracefs": False}, "tracefs", capabilities.NO_TRACEFS),
    ],
    ids=["without BTF", "without tracefs"],
)
def test_a_host_without_what_the_probes_need_is_refused_by_both(
    need_bpf, host: Host, missing: dict[str, bool], requirement: str, why: str
) -> None:
    host(**missing)
    report = run_doctor()
    assert not report.can_record
    assert [b.name for b in report.blockers] == [requirement]
    assert checks(report)[requirement].detail == why

    # record: the kernel probes refuse to start for the same reason, before compiling anything.
    assert record_start(KernelTracer()) == why


def test_a_host_without_memcg_tracepoints_records_with_sampling_and_doctor_says_so(
    need_bpf, host: Host
) -> None:
    host(memcg_tracepoints=False)
    report = run_doctor()
    doctor = checks(report)
    assert report.can_record, report.blockers
    assert doctor["memcg variant"].status == "ok"
    assert doctor["memcg variant"].detail.startswith("sampling")
    assert doctor["probe memcg"].status == "unavailable"
    assert doctor["tracepoint memcg:mod_memcg_state"].status == "unavailable"

    tracer = KernelTracer(probes={"memcg", "page_fault", "proc"})
    try:
        assert record_start(tracer) is None
        assert tracer.memcg_variant == "sampling"
        attached = {name for name, state in tracer.states.items() if state.attached}
    finally:
        tracer.stop()
    assert attached == {"page_fault", "proc"}
    for name in ("page_fault", "proc"):
        assert doctor[f"probe {name}"].status == "ok"


def test_doctor_checks_exactly_the_tracepoints_the_probes_attach_to(need_root) -> None:
    checked = {
        c.name.removeprefix("tracepoint ")
        for c in run_doctor().checks
        if c.name.startswith("tracepoint ")
    }
    attached = {
        a.target
        for probe in PROBES.values()
        for variant in probe.variants
        for a in variant.attachments
        if a.kind == "tracepoint"
    }
    assert checked == attached
    assert "task:task_newtask" in checked and "sched:sched_process_fork" not in checked
