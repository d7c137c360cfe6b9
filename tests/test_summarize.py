"""`uvmtrace summarize` over a sweep directory of known recordings: three native runs and three
Docker runs whose free memory at the sizing query scatters by a known amount. The Docker runs
hold 20 GiB more page cache of /weights.bin (tests/recordings.py), so KV shrinks by 0.9 x 23.5
GiB; the statistics are checked against numbers computed here, the cause against the story."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import jsonschema
import polars as pl
import pytest
from recordings import GIB, MIB, T0_NS, Recorder, S, docker_recorder, native_recorder
from scipy import stats

from uvmtrace.analysis.render_json import load_schema, to_json
from uvmtrace.analysis.summary import summarize
from uvmtrace.cli.main import main

SCATTER = [0, 96 * MIB, 32 * MIB]  # free memory at the sizing query moves by this per run


def _shifted(rec: Recorder, delta: int) -> Recorder:
    """The same run with `delta` more free memory at the sizing query, and KV = 0.9 x free."""
    for row in rec.rows:
        if row["event"] in ("cuMemGetInfo", "sysinfo") and row["ts_ns"] == T0_NS + 3 * S:
            row["free_bytes"] += delta
    for row in rec.rows:
        if row["event"] == "cuMemAlloc_v2" and row["ts_ns"] == T0_NS + round(3.1 * S):
            free = next(r["free_bytes"] for r in rec.rows if r["event"] == "cuMemGetInfo"
                        and r["ts_ns"] == T0_NS + 3 * S)  # fmt: skip
            row["bytes"] = int(0.9 * free)
    return rec


def _kv(rec: Recorder) -> int:
    return next(r["bytes"] for r in rec.rows if r["ts_ns"] == T0_NS + round(3.1 * S))


@pytest.fixture
def sweep_dir(tmp_path: Path) -> tuple[Path, dict[str, list[int]]]:
    kv: dict[str, list[int]] = {"native": [], "docker": []}
    for variant, make in (("native", native_recorder), ("docker", docker_recorder)):
        for run, delta in enumerate(SCATTER, 1):
            where = tmp_path / f"variant={variant}" / f"run={run}"
            where.mkdir(parents=True)
            rec = _shifted(make(), delta)
            rec.write(where / "recording.parquet")
            kv[variant].append(_kv(rec))
    state = {
        "variants": [
            {"name": "native"},
            {"name": "docker"},
            {"name": "podman", "skipped": "no podman command on this host"},
        ]
    }
    (tmp_path / "sweep.json").write_text(json.dumps(state))  # fmt: skip
    return tmp_path, kv


def test_one_row_per_recording_with_its_sizing_and_charges(sweep_dir) -> None:
    out, kv = sweep_dir
    doc, frame = summarize([str(out)])
    assert frame.height == 6
    docker = frame.filter(pl.col("variant") == "docker").sort("run")
    assert docker["run"].to_list() == [1, 2, 3]
    assert docker["kv_bytes"].to_list() == kv["docker"]
    assert docker["signal"].to_list() == ["cuMemGetInfo"] * 3
    assert docker["top_file"].to_list() == ["/weights.bin"] * 3
    assert docker["top_file_bytes"].to_list() == [21 * GIB] * 3
    assert docker["peak_file_bytes"].to_list() == [21 * GIB] * 3  # shmem moved to its own kind
    assert docker["peak_shmem_bytes"].to_list() == [2 * GIB] * 3
    assert frame.filter(pl.col("variant") == "native")["top_file_bytes"].to_list() == [GIB] * 3
    assert set(frame["trust"].to_list()) <= {"high", "medium", "low"}


def test_variant_statistics_and_the_difference_match_welch(sweep_dir) -> None:
    out, kv = sweep_dir
    doc, _ = summarize([str(out)])
    assert doc["baseline"] == "native"  # the plan's first variant, not the alphabetical one
    native = doc["variants"][0]["metrics"]["kv_bytes"]
    assert native["mean"] == pytest.approx(statistics.mean(kv["native"]))
    half = stats.t.ppf(0.975, 2) * statistics.stdev(kv["native"]) / 3**0.5
    assert native["ci_high"] - native["mean"] == pytest.approx(half)
    comp = doc["comparisons"][0]["metrics"]["kv_bytes"]
    welch = stats.ttest_ind(kv["docker"], kv["native"], equal_var=False)
    assert comp["p"] == pytest.approx(welch.pvalue)
    assert comp["difference"] == pytest.approx(-0.9 * 23.5 * GIB, rel=1e-6)
    assert comp["significant"] and comp["ci_high"] < 0


def test_the_conclusion_names_the_variant_the_interval_and_the_cause(sweep_dir) -> None:
    out, _ = sweep_dir
    doc, _ = summarize([str(out)])
    line = next(x for x in doc["conclusion"] if x.startswith("docker"))
    assert "differs from native" in line and "95% CI" in line
    cause = doc["comparisons"][0]["median_runs"]["cause"]
    assert cause["part"] == "file"
    assert cause["what"] == "page cache of /weights.bin charged to container trt"
    assert cause["bytes"] == 20 * GIB
    assert "podman: skipped (no podman command on this host)." in doc["conclusion"]


def test_the_cli_writes_parquet_json_and_html(sweep_dir, capsys) -> None:
    out, _ = sweep_dir
    html, js = out / "s.html", out / "s.json"
    with pytest.raises(SystemExit) as exit_:
        main(["summarize", str(out), "--html", str(html), "--json-out", str(js)])
    assert exit_.value.code == 0
    assert pl.read_parquet(out / "summary.parquet").height == 6
    doc = json.loads(js.read_text())
    assert doc["kind"] == "summary" and len(doc["runs"]) == 6
    jsonschema.Draft202012Validator(load_schema("summary_schema.json")).validate(doc)
    page = html.read_text()
    assert page.count("<svg") == 2 and "Main cause" in page
    printed = capsys.readouterr().out
    assert "Baseline native (3 runs)" in printed


def test_a_glob_and_a_chosen_baseline(sweep_dir) -> None:
    out, _ = sweep_dir
    doc, frame = summarize([f"{out}/variant=*/run=*/recording.parquet"], baseline="docker")
    assert frame.height == 6 and doc["baseline"] == "docker"
    assert doc["comparisons"][0]["metrics"]["kv_bytes"]["difference"] > 0


def test_bad_input_is_one_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["summarize", str(tmp_path / "nothing-here")])
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    assert err.startswith("uvmtrace: error:") and len(err.strip().splitlines()) == 1


def test_statistics_say_what_few_runs_cannot_tell() -> None:
    from uvmtrace.analysis.stats import compare, describe

    one = describe([5.0])
    assert one["mean"] == 5.0 and one["ci_low"] is None  # one run: no interval
    exact = compare([1.0, 1.0, 1.0], [3.0, 3.0])
    assert exact == {"difference": 2.0, "ci_low": 2.0, "ci_high": 2.0, "p": 0.0,
                     "significant": True}  # fmt: skip
    same = compare([1.0, 1.0], [1.0, 1.0])
    assert same["significant"] is False and same["difference"] == 0.0
    lone = compare([1.0, 2.0, 3.0], [7.0])
    assert lone["difference"] == 5.0 and lone["significant"] is None
    assert compare([], [1.0])["difference"] is None


def test_an_unreadable_recording_is_listed_and_the_rest_summarized(sweep_dir) -> None:
    out, _ = sweep_dir
    (out / "variant=docker" / "run=2" / "recording.parquet").write_bytes(b"not parquet")
    doc, frame = summarize([str(out)])
    assert frame.height == 6 and len(doc["unreadable"]) == 1
    assert next(v for v in doc["variants"] if v["variant"] == "docker")["runs"] == 2
    assert "1 recording(s) could not be read (see the table)." in doc["conclusion"]
    schema = jsonschema.Draft202012Validator(load_schema("summary_schema.json"))
    schema.validate(json.loads(to_json(doc)))


def test_each_row_s_sizing_is_its_report_s_however_many_are_fitted_together(
    sweep_dir, monkeypatch
) -> None:
    # summarize fits the recordings' allocations together (sizing.FIT_BATCH at a time); each
    # row must say what `uvmtrace report` of that recording alone says
    from uvmtrace.analysis import sizing
    from uvmtrace.analysis.report import build_report
    from uvmtrace.analysis.summary import recording_rows

    out, _ = sweep_dir
    paths = sorted(out.glob("variant=*/run=*/recording.parquet"))
    data = Path(__file__).parent / "data"
    paths += sorted((data / "sizing").glob("*.parquet")) + sorted(data.glob("h200_*.parquet"))
    together = recording_rows(paths, sizing.DEFAULT_MIN_ALLOC, sizing.DEFAULT_TOLERANCE)
    monkeypatch.setattr(sizing, "FIT_BATCH", 2)
    in_twos = recording_rows(paths, sizing.DEFAULT_MIN_ALLOC, sizing.DEFAULT_TOLERANCE)
    assert in_twos == together
    for path, row in zip(paths, together, strict=True):
        kv = build_report(path)["sizing"]["kv"]
        assert row["kv_bytes"] == (kv["bytes"] if kv else None), path
        assert row["signal_free_bytes"] == (kv["query_free_bytes"] if kv else None), path
        assert row["kv_fraction"] == (kv["fraction"] if kv else None), path
