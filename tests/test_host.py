"""The host facts (uvmtrace.host), each read in one place, agree with what the kernel itself
shows: /proc/self/cgroup and /proc/cgroups, /proc/mounts, bpftool's dump of the kernel's BTF,
/proc/vmstat, BCC's own module."""

from __future__ import annotations

import ast
import gzip
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from uvmtrace.host import bcc, btf, cgroupfs, kconfig, tracefs
from uvmtrace.recording.errors import UserError

# -- cgroupfs --------------------------------------------------------------------------------------


def own_cgroup_lines() -> list[tuple[int, list[str], str]]:
    out = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        num, controllers, rel = line.split(":", 2)
        out.append((int(num), controllers.split(",") if controllers else [], rel))
    return out


def mounted_types() -> dict[str, str]:
    """mount point -> fs type."""
    return {
        line.split()[1]: line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()
    }


@pytest.fixture
def memory() -> cgroupfs.MemoryHierarchy:
    h = cgroupfs.memory_hierarchy()
    if h is None:
        pytest.skip("this host has no memory cgroup controller")
    return h


def test_the_memory_hierarchy_is_where_the_kernel_mounted_the_memory_controller(
    memory: cgroupfs.MemoryHierarchy,
) -> None:
    mounts = mounted_types()
    assert mounts[str(memory.mount)] == ("cgroup" if memory.version == 1 else "cgroup2")
    assert (memory.mount / memory.usage_file).exists()
    assert memory.name == ("memory" if memory.version == 1 else "unified")


def test_cgroup_version_matches_the_mounts() -> None:
    types = set(mounted_types().values())
    v1_memory = Path("/sys/fs/cgroup/memory/memory.stat").exists()
    expected = {(True, True): "hybrid", (True, False): "v2", (False, True): "v1"}
    assert cgroupfs.cgroup_version() == expected[("cgroup2" in types, v1_memory)]
    v2 = cgroupfs.v2_mount()
    assert (v2 is not None) == ("cgroup2" in types)
    if v2 is not None:
        assert mounts_of("cgroup2") == {str(v2)}


def mounts_of(fstype: str) -> set[str]:
    return {m for m, t in mounted_types().items() if t == fstype}


def test_our_memory_cgroup_and_its_id_round_trip(memory: cgroupfs.MemoryHierarchy) -> None:
    """/proc/self/cgroup names our memory cgroup; its id (the directory's inode, what the memcg
    tracepoints report) leads back to the same path."""
    wanted = [
        rel
        for num, controllers, rel in own_cgroup_lines()
        if (num == 0 if memory.version == 2 else "memory" in controllers)
    ]
    path = cgroupfs.memory_cgroup_of(memory)
    assert memory.relative(path) == wanted[0]
    assert path == memory.path_of(wanted[0])
    assert cgroupfs.memory_cgroup_if_any(memory, os.getpid()) == path
    assert cgroupfs.find_cgroup(cgroupfs.cgroup_id(path)) == (wanted[0], memory.name)
    ancestors = cgroupfs.ancestor_ids(wanted[0])
    assert list(ancestors.values()) == cgroupfs.ancestors(wanted[0])
    if wanted[0] != "/":
        assert ancestors[cgroupfs.cgroup_id(memory.mount)] == "/"
        assert os.getpid() in cgroupfs.members(path)


def test_a_gone_process_has_no_memory_cgroup(memory: cgroupfs.MemoryHierarchy) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert cgroupfs.memory_cgroup_if_any(memory, proc.pid) is None
    assert cgroupfs.memory_cgroup_if_any(None, os.getpid()) is None
    with pytest.raises(OSError):
        cgroupfs.memory_cgroup_of(memory, proc.pid)


def test_hierarchy_ids_are_those_proc_self_cgroup_shows() -> None:
    names = cgroupfs.hierarchy_names()
    for num, controllers, _rel in own_cgroup_lines():
        if num == 0:
            assert names[0] == "unified"
        elif controllers and not controllers[0].startswith("name="):
            assert set(names[num].split(",")) == set(controllers)
    memory_ids = [num for num, c, _ in own_cgroup_lines() if "memory" in c]
    assert cgroupfs.memory_hierarchy_id() == (memory_ids[0] if memory_ids else 0)


def test_memory_stat_is_read_as_the_file_says(memory: cgroupfs.MemoryHierarchy) -> None:
    path = cgroupfs.memory_cgroup_of(memory) / "memory.stat"
    stat = cgroupfs.read_stat(path)
    first_key, first_value = path.read_text().split("\n", 1)[0].split()
    assert first_key in stat
    assert ("cache" in stat) if memory.version == 1 else ("file" in stat)
    assert cgroupfs.read_stat(path.parent / "no-such-file") == {}
    assert cgroupfs.read_int(memory.mount / memory.usage_file) is not None


def test_a_cgroup_given_by_the_user_is_found_inside_the_hierarchy(
    memory: cgroupfs.MemoryHierarchy,
) -> None:
    assert memory.path_of("/docker/abc") == memory.mount / "docker" / "abc"
    assert memory.path_of(memory.mount / "docker") == memory.mount / "docker"
    assert memory.path_of("docker/../x") == memory.mount / "x"
    assert not memory.contains(memory.path_of("../../etc"))
    assert memory.lookup("../../etc") is None
    assert memory.lookup("/no-such-cgroup-uvmtrace") is None
    assert memory.lookup("/") == memory.mount
    own = cgroupfs.memory_cgroup_of(memory)
    assert memory.lookup(memory.relative(own)) == own
    assert memory.lookup(own) == own
    assert memory.relative(memory.mount) == "/"


# -- tracefs -----------------------------------------------------------------------------------


def test_tracefs_is_found_where_it_is_mounted(need_root: None) -> None:
    found = tracefs.mount_point()
    if found is None:
        pytest.skip("tracefs is not mounted here")
    # debugfs mounts tracefs inside itself on older systems
    assert mounted_types().get(found) == "tracefs" or found == "/sys/kernel/debug/tracing"
    assert tracefs.tracepoint_exists("sched:sched_process_exit")
    assert not tracefs.tracepoint_exists("sched:no_such_event")
    assert tracefs.kprobes_available() == os.path.exists(os.path.join(found, "kprobe_events"))


# -- BTF -------------------------------------------------------------------------------------------

BPFTOOL = shutil.which("bpftool")


@pytest.fixture(scope="module")
def kernel_btf() -> btf.Btf:
    try:
        return btf.read()
    except UserError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def bpftool_dump() -> str:
    if BPFTOOL is None or not os.access(btf.VMLINUX_BTF, os.R_OK):
        pytest.skip("needs bpftool (scripts/setup-host installs it) and kernel BTF")
    cmd = [BPFTOOL, "btf", "dump", "file", btf.VMLINUX_BTF, "format", "raw"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_function_ids_are_bpftools(kernel_btf: btf.Btf, bpftool_dump: str) -> None:
    for name in ("vfs_read", "bpf_fentry_test1"):
        found = re.search(rf"^\[(\d+)\] FUNC '{name}' ", bpftool_dump, re.M)
        assert kernel_btf.function_id(name) == (int(found.group(1)) if found else None)
    assert kernel_btf.function_id("no_such_function_uvmtrace") is None


def test_struct_offsets_are_bpftools(kernel_btf: btf.Btf, bpftool_dump: str) -> None:
    """The members the raw tracepoint probes read by offset (probes/kernlayout.py)."""
    for struct_name, member in (("kernfs_node", "id"), ("cgroup", "kn"), ("pt_regs", "ip")):
        block = re.search(rf"^\[\d+\] STRUCT '{struct_name}' .*?(?=^\[)", bpftool_dump, re.M | re.S)
        assert block is not None, struct_name
        bits = re.search(rf"'{member}' type_id=\d+ bits_offset=(\d+)", block.group(0))
        assert bits is not None, (struct_name, member)
        assert kernel_btf.offset_of(struct_name, member) == int(bits.group(1)) // 8


def test_enums_are_bpftools(kernel_btf: btf.Btf, bpftool_dump: str) -> None:
    values = kernel_btf.enum("cgroup_subsys_id")
    assert values is not None
    found = re.search(r"'memory_cgrp_id' val=(\d+)", bpftool_dump)
    assert found is not None
    assert kernel_btf.enum_value("cgroup_subsys_id", "memory_cgrp_id") == int(found.group(1))


def test_a_blob_that_is_not_btf_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="magic"):
        btf.Btf(b"\0" * 32)
    with pytest.raises(UserError, match="cannot read kernel BTF"):
        btf.read(str(tmp_path / "missing"))
    header = struct.pack("<HBBI4I", btf.BTF_MAGIC, 1, 0, 24, 0, 12, 12, 1)
    with pytest.raises(UserError, match="unknown BTF kind 31"):
        btf.Btf(header + struct.pack("<3I", 0, 31 << 24, 0) + b"\0")


# -- kernel config -------------------------------------------------------------------------------


def test_kernel_config_is_read_from_gzip_or_plain_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "CONFIG_HZ=250\nCONFIG_KPROBES=y\n# CONFIG_FTRACE is not set\n"
    for name, data in (("config.gz", gzip.compress(text.encode())), ("config", text.encode())):
        (tmp_path / name).write_bytes(data)
        monkeypatch.setattr(kconfig, "config_paths", lambda n=name: (str(tmp_path / n),))
        kconfig._options.cache_clear()
        assert kconfig.hz() == 250
        assert kconfig.option("CONFIG_KPROBES") == "y"
        assert kconfig.option("CONFIG_FTRACE") == "n"
        assert kconfig.option("CONFIG_NOT_IN_THE_FILE") == "n"
    monkeypatch.setattr(kconfig, "config_paths", lambda: (str(tmp_path / "none"),))
    kconfig._options.cache_clear()
    assert kconfig.option("CONFIG_KPROBES") is None
    assert kconfig.hz() is None
    kconfig._options.cache_clear()


def test_this_kernels_config_says_it_has_bpf_and_btf(kernel_btf: btf.Btf) -> None:
    if kconfig.option("CONFIG_BPF_SYSCALL") is None:
        pytest.skip("this kernel's config is not readable (/proc/config.gz, /boot)")
    assert kconfig.option("CONFIG_BPF_SYSCALL") == "y"
    assert kconfig.option("CONFIG_DEBUG_INFO_BTF") == "y"  # it has /sys/kernel/btf/vmlinux
    assert kconfig.hz() in (100, 250, 300, 1000)


# -- BCC ---------------------------------------------------------------------------------------


def test_bcc_is_imported_from_where_it_is_installed() -> None:
    try:
        module = bcc.import_bcc()
    except UserError as exc:
        assert "not installed" in str(exc) or "unusable" in str(exc)
        pytest.skip(str(exc))
    assert hasattr(module, "BPF")
    headers = bcc.kernel_headers_dir()
    if headers is not None:
        assert Path(headers, "include").is_dir()


# -- data flows one way ----------------------------------------------------------------------------


def test_analysis_never_reads_the_host_nor_the_recorder() -> None:
    """analysis/ works from the recording alone, on any machine: it imports no host/, tracer/,
    probes/ or shim/ module (ARCHITECTURE.md, data flow)."""
    forbidden = ("uvmtrace.host", "uvmtrace.tracer", "uvmtrace.probes", "uvmtrace.shim")
    analysis = Path(__file__).resolve().parent.parent / "analysis"
    found = []
    for path in sorted(analysis.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.startswith(forbidden)]
    assert found == []
