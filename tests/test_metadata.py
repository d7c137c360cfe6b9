"""The recording's metadata, typed once (recording/metadata.py): every key the recorder writes
has a field, real recordings read without leftovers, and a damaged value never raises."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from uvmtrace.recording.metadata import Metadata

DATA = Path(__file__).parent / "data"
REAL = sorted(DATA.glob("*.parquet")) + sorted(DATA.glob("*/*.parquet"))


def _raw(path: Path) -> dict:
    return json.loads(pl.read_parquet_metadata(path)["uvmtrace"])


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_every_key_of_a_real_recording_has_a_typed_field(path: Path) -> None:
    meta = Metadata.from_json(_raw(path))
    assert meta.extra == {}
    assert meta.schema_version >= 1


def test_real_gpu_recording_reads_into_fields() -> None:
    path = DATA / "h200_fullstack.parquet"
    if not path.exists():
        pytest.skip("no full-stack recording in tests/data")
    raw, meta = _raw(path), Metadata.from_json(_raw(path))
    assert meta.command == tuple(raw["command"])
    assert meta.gpu.unified_memory is raw["gpu"]["unified_memory"]
    assert set(meta.probes) == set(raw["probes"])
    assert {str(k) for k in meta.cgroups} == set(raw["cgroups"])
    assert meta.ended and meta.exit_code == raw["exit_code"]


def test_damaged_values_get_defaults_not_exceptions() -> None:
    meta = Metadata.from_json(
        {
            "schema_version": 1,
            "command": "python serve.py",  # a string, as an old writer did
            "cgroups": {"12": "not a dict", "x": {}},
            "probes": {"memcg": None},
            "not_traced": [{"why": "no what"}, "text", {"what": "kernel events", "why": 3}],
            "target_cgroups": ["12", None],
            "gpu": [],
            "container": "c1",
            "attach": {"targets": "all", "duration_s": "10"},
            "future_key": 1,
        }
    )
    assert meta.command == ("python serve.py",) and meta.command_line == "python serve.py"
    assert meta.cgroups[12].path is None and list(meta.cgroups) == [12]
    assert meta.probes["memcg"].attached  # unknown: not claimed detached
    assert [n.what for n in meta.not_traced] == ["kernel events"]
    assert meta.target_cgroups == (12,)
    assert meta.gpu.unified_memory is None and meta.container is None
    assert meta.attach is not None and meta.attach.targets == () and meta.attach.duration_s is None
    assert not meta.ended and meta.extra == {"future_key": 1}
