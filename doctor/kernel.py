"""Checks of the running kernel: privileges, bpf(), tracefs and tracepoints, kprobes, fentry, BTF,
kernel headers, cgroups."""

from __future__ import annotations

import errno
import os
import platform
from pathlib import Path

from uvmtrace.doctor import bpf_syscall
from uvmtrace.doctor.result import Check, missing, ok, unavailable
from uvmtrace.host import bcc, btf, cgroupfs, kconfig, tracefs
from uvmtrace.probes import capabilities
from uvmtrace.recording.errors import UserError

SETUP = "sudo scripts/setup-host"

# What losing a tracepoint costs (the fix column), for the ones where it is more than "the probe
# is not attached". Which tracepoints are checked comes from the probes (probes/registry.py).
CONSEQUENCES: dict[str, str] = {
    "memcg:mod_memcg_state": "kernel >= 6.14 has it; older kernels: kprobe or memory.stat sampling",
    "memcg:mod_memcg_lruvec_state": "kernel >= 6.14 has it; older: kprobe or memory.stat sampling",
    "memcg:count_memcg_events": "kernel >= 6.14 has it; vm events per cgroup are then not recorded",
    "exceptions:page_fault_user": "x86 only; page faults then come from /proc/PID/stat samples",
    "exceptions:page_fault_kernel": "x86 only; faults taken in kernel mode are then not counted",
    "filemap:mm_filemap_add_to_page_cache": "page-cache attribution per file is lost without it",
    "filemap:mm_filemap_delete_from_page_cache": "page-cache attribution per file is lost",
    "task:task_newtask": "the proc probe (forks and exits of the traced tree) is not attached",
    "sched:sched_process_exit": (
        "the proc probe (forks and exits of the traced tree) is not attached"
    ),
    "sched:sched_process_exec": "exec events are then missing",
    "syscalls:sys_enter_exit_group": "exit codes are then missing from exit events",
    "cgroup:cgroup_mkdir": (
        "a container started while recording is then traced from when uvmtrace finds it "
        "(docker/podman inspect), not from its creation; other new cgroups are not followed"
    ),
}


def check_root() -> Check:
    if os.geteuid() == 0:
        return ok("root", "running as root (uid 0)")
    return missing(
        "root", f"running as uid {os.geteuid()}: eBPF tracing needs root", "run: sudo uvmtrace ..."
    )


def check_bpf_syscall() -> Check:
    name = "bpf() syscall"
    try:
        os.close(bpf_syscall.create_array_map())
        fd, _log = bpf_syscall.load_program(bpf_syscall.BPF_PROG_TYPE_SOCKET_FILTER)
        os.close(fd)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            return unavailable(
                name, "ENOSYS: kernel built without CONFIG_BPF_SYSCALL", "use a kernel with eBPF"
            )
        if exc.errno == errno.EPERM and os.geteuid() == 0:
            return missing(
                name,
                "EPERM as uid 0: this process lacks CAP_BPF/CAP_SYS_ADMIN (an unprivileged "
                "container, or capabilities dropped)",
                "run as a full root (docker: --privileged, or --cap-add BPF,PERFMON,SYS_ADMIN)",
            )
        if exc.errno == errno.EPERM:
            return missing(name, f"EPERM: uid {os.geteuid()} may not load BPF programs", "sudo")
        return unavailable(name, f"bpf() failed: {exc.strerror}", "use a kernel with eBPF")
    return ok(name, "created a BPF map and loaded a socket-filter program")


def find_tracefs() -> Path | None:
    """Where the probes will find tracefs (the one discovery: host/tracefs.py)."""
    path = tracefs.mount_point()
    return Path(path) if path is not None else None


def check_tracefs() -> Check:
    path = find_tracefs()
    if path is not None:
        return ok("tracefs", f"mounted at {path}")
    if os.geteuid() != 0:
        return missing("tracefs", "tracefs is readable by root only", "run as root")
    fix = "mount -t tracefs tracefs /sys/kernel/tracing (or: " + SETUP + ")"
    return missing("tracefs", capabilities.NO_TRACEFS, fix)


def check_tracepoints(tracefs_dir: Path | None, used_by_probes: dict[str, str]) -> list[Check]:
    """One check per tracepoint the probes attach to (`used_by_probes`: {"category:event":
    "required" | "optional"}, from probes/registry.py), asked the way the probes ask."""
    checks = []
    for tp, need in used_by_probes.items():
        name = f"tracepoint {tp}"
        if tracefs_dir is None:
            fix = "run as root" if os.geteuid() != 0 else SETUP
            checks.append(missing(name, "tracefs is not readable here", fix))
        elif tracefs.tracepoint_exists(tp):
            checks.append(ok(name, "present"))
        else:
            consequence = CONSEQUENCES.get(tp, f"{need} for the probes")
            checks.append(unavailable(name, f"this kernel has no {tp}", consequence))
    return checks


def check_kprobes(tracefs_dir: Path | None) -> Check:
    name = "kprobes"
    fallback = "uvmtrace uses tracepoints, or samples memory.stat, instead"
    if kconfig.option("CONFIG_KPROBES") == "n":
        return unavailable(name, "kernel built without CONFIG_KPROBES", fallback)
    pmu = Path("/sys/bus/event_source/devices/kprobe")
    events = tracefs_dir / "kprobe_events" if tracefs_dir else None
    if events is None or not events.exists():
        why = "no kprobe_events in tracefs" + ("" if pmu.exists() else " and no kprobe PMU")
        return unavailable(name, why, fallback)
    # Creating (then deleting) a probe on a function every kernel has is the real test.
    probe = f"uvmtrace_doctor_{os.getpid()}"
    try:
        with open(events, "a") as f:
            f.write(f"p:{probe} vfs_read\n")
        with open(events, "a") as f:
            f.write(f"-:{probe}\n")
    except PermissionError:
        return missing(name, f"cannot write {events}", "run as root")
    except OSError as exc:
        return unavailable(name, f"creating a kprobe on vfs_read failed: {exc.strerror}", fallback)
    return ok(name, f"created and removed a kprobe on vfs_read through {events}")


def check_btf() -> Check:
    """The probes name memcg items from kernel BTF and do not start without it (no fallback)."""
    why = capabilities.btf_missing()
    if why is None:
        size = os.stat(btf.VMLINUX_BTF).st_size >> 20
        return ok("BTF", f"{btf.VMLINUX_BTF} ({size} MiB): memcg item names")
    return unavailable(
        "BTF",
        why,
        "the kernel probes need it (record then has no kernel stream): a kernel built with "
        "CONFIG_DEBUG_INFO_BTF=y",
    )


def check_fentry() -> Check:
    name = "fentry"
    fallback = "uvmtrace uses tracepoints instead"
    if platform.machine() not in ("x86_64", "aarch64"):
        return unavailable(name, f"no BPF trampolines on {platform.machine()}", fallback)
    if not os.path.exists(btf.VMLINUX_BTF):
        return unavailable(name, "needs kernel BTF, which is absent", fallback)
    # bpf_fentry_test1 exists for exactly this kind of test and is only called by
    # BPF_PROG_TEST_RUN, so attaching to it for a moment disturbs nothing.
    target = "bpf_fentry_test1"
    try:
        types = btf.read()
    except UserError as exc:
        return unavailable(name, str(exc), fallback)
    btf_id = types.function_id(target) or types.function_id(target := "vfs_read")
    if btf_id is None:
        return unavailable(name, "no function to test against in kernel BTF", fallback)
    try:
        fd, _log = bpf_syscall.load_program(
            bpf_syscall.BPF_PROG_TYPE_TRACING,
            expected_attach_type=bpf_syscall.BPF_TRACE_FENTRY,
            attach_btf_id=btf_id,
        )
    except OSError as exc:
        if exc.errno == errno.EPERM and os.geteuid() != 0:
            return missing(name, "loading a tracing program needs root", "run as root")
        why = f"loading an fentry program on {target} answers {exc.strerror}"
        if exc.errno == errno.EPERM:
            why += " even as root (a security policy or the kernel forbids trampolines)"
        return unavailable(name, why, fallback)
    try:
        os.close(bpf_syscall.attach_tracing(fd))
    except OSError as exc:
        return unavailable(name, f"attaching fentry to {target}: {exc.strerror}", fallback)
    finally:
        os.close(fd)
    return ok(name, f"loaded and attached an fentry program on {target}")


def check_kernel_headers() -> Check:
    name = "kernel headers"
    release = platform.release()
    found = bcc.kernel_headers_dir()  # where BCC will look
    if found is None:
        return missing(
            name,
            f"no headers at /lib/modules/{release}/build: BCC cannot compile",
            f"apt-get install linux-headers-{release} (or: {SETUP}, which links the nearest)",
        )
    build = Path(found)
    target = build.resolve()
    if release not in target.name:
        return ok(
            name,
            f"{build} -> {target} (not this kernel's own: tracepoint programs are fine, "
            "struct offsets may differ)",
        )
    return ok(name, str(target))


def check_cgroups() -> Check:
    """The cgroup layout as the recorder sees it (host/cgroupfs.py)."""
    name = "cgroups"
    version = cgroupfs.cgroup_version()
    if version == "none":
        return missing(name, "no cgroup file system is mounted", "mount cgroup2 on /sys/fs/cgroup")
    h = cgroupfs.memory_hierarchy()
    v2 = cgroupfs.v2_mount()
    where = []
    if h is not None and h.version == 1:
        where.append(f"memory controller on v1 at {h.mount}")
    if v2 is not None:
        has_memory = h is not None and h.version == 2
        where.append(f"v2 at {v2}" + (" with memory" if has_memory else " (no memory controller)"))
    detail = f"{version}: " + "; ".join(where)
    if h is None:
        return missing(name, detail + "; no memory controller", "boot with cgroup_enable=memory")
    return ok(name, detail)
