"""The BPF side and the Python decoder agree on every record layout, and kernel item names come
from the running kernel's BTF."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from uvmtrace.host import btf
from uvmtrace.probes import event_dtypes as layouts
from uvmtrace.probes import kernlayout
from uvmtrace.probes.bpfsource import PROBES_DIR


def compile_and_run(tmp_path: Path, body: str) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "layout.c"
    src.write_text(
        '#include <stdio.h>\n#include <stddef.h>\n#include "events.h"\n'
        f"int main(void) {{\n{body}\nreturn 0;\n}}\n"
    )
    exe = tmp_path / "layout"
    subprocess.run([cc, f"-I{PROBES_DIR}", "-o", str(exe), str(src)], check=True)
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout


def test_events_h_layouts_match_the_decoder_dtypes(tmp_path: Path) -> None:
    lines = []
    for struct_name, dtype in layouts.C_STRUCTS.items():
        lines.append(f'printf("{struct_name} sizeof %zu\\n", sizeof(struct {struct_name}));')
        for field in dtype.names:
            lines.append(
                f'printf("{struct_name} {field} %zu %zu\\n", '
                f"offsetof(struct {struct_name}, {field}), "
                f"sizeof(((struct {struct_name} *)0)->{field}));"
            )
    seen = {}
    for line in compile_and_run(tmp_path, "\n".join(lines)).splitlines():
        name, field, *nums = line.split()
        seen[(name, field)] = tuple(int(n) for n in nums)
    for struct_name, dtype in layouts.C_STRUCTS.items():
        assert seen[(struct_name, "sizeof")] == (dtype.itemsize,), struct_name
        for field in dtype.names:
            ftype, offset = dtype.fields[field][:2]
            assert seen[(struct_name, field)] == (offset, ftype.itemsize), (struct_name, field)


def test_events_h_enums_match_the_decoder(tmp_path: Path) -> None:
    body = "\n".join(f'printf("{k} %d\\n", (int)({k}));' for k in layouts.C_ENUMS)
    out = dict(line.split() for line in compile_and_run(tmp_path, body).splitlines())
    assert {k: int(v) for k, v in out.items()} == layouts.C_ENUMS


@pytest.mark.skipif(not os.access(btf.VMLINUX_BTF, os.R_OK), reason="no kernel BTF")
def test_item_names_from_btf_follow_the_kernels_own_vmstat_order() -> None:
    """/proc/vmstat prints node stat items and vm events in enum order: an independent witness."""
    stats, events = kernlayout.item_names()
    number = {name: n for n, name in stats.items()}
    event_number = {name: n for n, name in events.items()}
    vmstat = [line.split()[0] for line in Path("/proc/vmstat").read_text().splitlines()]
    first_node, first_event = vmstat.index("nr_inactive_anon"), vmstat.index("pgpgin")
    assert vmstat.index("nr_shmem") - first_node == number["NR_SHMEM"]
    assert vmstat.index("nr_file_pages") - first_node == number["NR_FILE_PAGES"]
    assert vmstat.index("pgfault") - first_event == event_number["PGFAULT"]
    assert vmstat.index("pgmajfault") - first_event == event_number["PGMAJFAULT"]
    # memcg_stat_item continues node_stat_item's numbering (mod_memcg_state uses both)
    assert number["MEMCG_KMEM"] > number["NR_SHMEM"]


def test_btf_parser_reads_a_hand_built_enum() -> None:
    strings = b"\0colour\0RED\0GREEN\0"
    enum = (
        struct.pack("<3I", 1, (6 << 24) | 2, 4)
        + struct.pack("<Ii", 8, 0)
        + struct.pack("<Ii", 12, 7)
    )
    header = struct.pack("<HBBI4I", btf.BTF_MAGIC, 1, 0, 24, 0, len(enum), len(enum), len(strings))
    assert btf.Btf(header + enum + strings).enum("colour") == {0: "RED", 7: "GREEN"}


def test_unit_of_each_item_kind() -> None:
    assert kernlayout.unit_bytes("NR_SLAB_RECLAIMABLE_B", 4096) == 1
    assert kernlayout.unit_bytes("NR_KERNEL_STACK_KB", 4096) == 1024
    assert kernlayout.unit_bytes("NR_FILE_PAGES", 4096) == 4096


def test_kprobe_memcg_variant_compiles(need_bpf: None) -> None:
    """It cannot attach on this machine (no kprobes), but the program must build and load."""
    from uvmtrace.host.bcc import import_bcc
    from uvmtrace.probes import bpfsource

    bcc = import_bcc()
    text = bpfsource.bpf_text(
        ["memcg_kprobe.bpf.c"], raw=False, ringbuf_pages=8, bucket_ns=10**8, small_pages=8
    )
    bpf = bcc.BPF(text=text.encode(), cflags=bpfsource.cflags())
    try:
        for fn in ("kp_memcg_state", "kp_memcg_lruvec", "kp_memcg_events"):
            bpf.load_func(fn.encode(), bcc.BPF.KPROBE)
    finally:
        bpf.cleanup()


def test_probe_plan_names_a_variant_for_every_probe() -> None:
    from uvmtrace.probes.plan import probe_plan
    from uvmtrace.probes.registry import ALL_PROBES

    plan = probe_plan()
    assert set(plan["probes"]) == ALL_PROBES
    assert plan["memcg_variant"] in ("tracepoint", "kprobe", "sampling")
    for entry in plan["probes"].values():
        assert entry["available"] or entry["why"]
