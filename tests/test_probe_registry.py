"""Every probe declared in probes/registry.py agrees with its parts: the BPF source defines the
programs it attaches, the maps it names, with the structs and slot counts it names; its loss
slot is the one events.h numbers for it; its decoder turns its records into the events it
declares, and docs/recording.md describes them. The layouts of the structs themselves are
checked against events.h in test_probes_layout.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.test_probes_layout import compile_and_run
from uvmtrace.probes import bpfsource, capabilities, decode, event_dtypes, registry
from uvmtrace.probes.pathres import PathResolver
from uvmtrace.probes.registry import LOST_SLOTS, PROBES, Probe

DOCS = Path(__file__).resolve().parents[1] / "docs" / "recording.md"


def probe_text(probe: Probe) -> str:
    """The probe's BPF files with the helper headers they include, as the loader compiles them."""
    pasted: set[str] = set()
    return "\n".join(bpfsource.expand_headers(f, pasted) for f in sorted(registry.sources(probe)))


def c_values(tmp_path: Path, exprs: list[str]) -> list[int]:
    """The values of C constant expressions over events.h."""
    body = "\n".join(f'printf("%lld\\n", (long long)({e}));' for e in exprs)
    return [int(v) for v in compile_and_run(tmp_path, body).split()]


@pytest.mark.parametrize("name", PROBES)
def test_the_bpf_source_defines_every_program_the_probe_attaches(name: str) -> None:
    probe = PROBES[name]
    for variant in probe.variants:
        text = bpfsource.expand_headers(variant.source, set())
        if variant.raw is not None and variant.raw.source is not None:
            text += bpfsource.expand_headers(variant.raw.source, set())
        attachments = variant.attachments + (variant.raw.attachments if variant.raw else ())
        for att in attachments:
            assert re.search(rf"^int {att.fn}\(", text, re.MULTILINE), (variant.source, att.fn)


@pytest.mark.parametrize("name", PROBES)
def test_the_bpf_source_declares_the_maps_with_the_structs_the_registry_names(
    name: str, tmp_path: Path
) -> None:
    probe, text = PROBES[name], probe_text(PROBES[name])
    if probe.ring is not None:
        ring = probe.ring
        assert re.search(rf"BPF_RINGBUF_OUTPUT\({ring.map}, ", text), ring.map
        assert f"{ring.map}.ringbuf_reserve(sizeof(struct {ring.struct}))" in text
        assert ring.struct in event_dtypes.C_STRUCTS
        pages = "UVM_RINGBUF_PAGES_SMALL" if ring.small else "UVM_RINGBUF_PAGES"
        assert re.search(rf"BPF_RINGBUF_OUTPUT\({ring.map}, {pages}\)", text), ring.map
    if probe.agg is not None:
        agg = probe.agg
        assert re.search(rf"BPF_HASH\({agg.map}, struct {agg.key}, struct agg_val,", text)
        assert agg.key in event_dtypes.C_STRUCTS
        found = re.search(rf"BPF_PERCPU_ARRAY\({agg.slots}, struct agg_slot, ([^)]+)\)", text)
        assert found, agg.slots
        assert c_values(tmp_path, [found.group(1)]) == [agg.nslots]
        for key_field in agg.slot_fields:
            assert key_field in agg.dtype.names


def test_each_probe_counts_its_losses_in_the_slot_events_h_gives_it(tmp_path: Path) -> None:
    names = [f"UVM_LOST_{name.upper()}" for name in LOST_SLOTS]
    assert c_values(tmp_path, [*names, "UVM_LOST_SLOTS"]) == [*range(len(LOST_SLOTS)), len(names)]
    for name, probe in PROBES.items():
        assert f"UVM_LOST_{name.upper()}" in probe_text(probe), name


@pytest.mark.parametrize("name", PROBES)
def test_the_decoder_turns_the_probes_records_into_the_events_it_declares(name: str) -> None:
    if capabilities.btf_missing():
        pytest.skip(f"item names need kernel BTF: {capabilities.btf_missing()}")
    probe = PROBES[name]
    ctx = decode.Context(decode.ItemNames(4096), 4096, PathResolver(), {0: "unified"})
    batches = []
    if probe.ring is not None:
        batches += probe.ring.decode(ctx, np.zeros(3, probe.ring.dtype))
    if probe.agg is not None:
        keys = np.zeros(3, probe.agg.dtype)
        batches += probe.agg.decode(ctx, keys, np.zeros(3, event_dtypes.AGG_VAL))
    assert batches
    events = {e for b in batches for e in b.column("event").to_pylist()}
    assert events <= set(probe.events), events


def test_every_event_a_probe_writes_is_described_in_docs_recording() -> None:
    docs = DOCS.read_text()
    for probe in PROBES.values():
        for event in probe.events:
            assert f"`{event}`" in docs, (probe.name, event)
    names = ", ".join(f"`{n}`" for n in LOST_SLOTS[:-1])
    assert names in docs, "the metadata's `lost` keys"


def test_every_probe_compiles_and_loads_together_in_both_modes(need_bpf: None) -> None:
    """One program with every variant of every probe, aggregated and raw: each program the
    registry attaches loads, and each map it drains exists."""
    from uvmtrace.host.bcc import import_bcc
    from uvmtrace.probes import kernlayout

    bcc = import_bcc()
    kinds = {
        "tracepoint": bcc.BPF.TRACEPOINT,
        "raw_tracepoint": bcc.BPF.RAW_TRACEPOINT,
        "kprobe": bcc.BPF.KPROBE,
    }
    files = [f for p in PROBES.values() for f in sorted(registry.sources(p))]
    layout = kernlayout.raw_layout()
    for raw in (False, True):
        text = bpfsource.bpf_text(
            files, raw=raw, ringbuf_pages=8, bucket_ns=10**8, small_pages=8, offsets=layout.defines
        )
        bpf = bcc.BPF(text=text.encode(), cflags=bpfsource.cflags())
        try:
            for probe in PROBES.values():
                for variant in probe.variants:
                    atts = variant.attachments
                    if variant.raw is not None and variant.raw.blocked() is None:
                        atts += variant.raw.attachments
                    for att in atts:
                        bpf.load_func(att.fn.encode(), kinds[att.kind])
                maps = []
                if probe.ring is not None and (raw or not probe.ring.raw_only):
                    maps.append(probe.ring.map)
                if probe.agg is not None and not (raw and probe.agg.aggregated_only):
                    maps += [probe.agg.map, probe.agg.slots]
                for m in maps:
                    bpf.get_table(m.encode())
        finally:
            bpf.cleanup()
