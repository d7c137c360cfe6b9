"""The HTML report opens in a real browser (headless Chromium) with its charts drawn."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.recordings import docker_run, native_run
from uvmtrace.analysis.output import write_outputs
from uvmtrace.analysis.report import build_diff, build_report

PIL = pytest.importorskip("PIL.Image", reason="pillow (test extra) reads the screenshot")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if IN_CI:
            pytest.fail("CI=true but chromium is missing (apt-get install -y chromium)")
        pytest.skip("needs chromium (apt-get install -y chromium)")
    return exe


def _screenshot(html: Path, png: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                "--window-size=1200,2000",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
            env={**os.environ, "HOME": profile},
        )


def _ink(png: Path) -> tuple[float, int]:
    """Share of non-white pixels, and how many distinct colours (lines of a chart have many)."""
    img = PIL.open(png).convert("RGB")
    px = list(img.get_flattened_data())
    ink = sum(1 for p in px if sum(p) < 720)
    return ink / len(px), len(set(px))


@pytest.mark.parametrize("kind", ["report", "diff"])
def test_html_report_renders_charts_in_chromium(kind: str, tmp_path: Path):
    _chromium()
    a, b = native_run(tmp_path / "a.parquet"), docker_run(tmp_path / "b.parquet")
    doc = build_report(b) if kind == "report" else build_diff(a, b)
    html = tmp_path / f"{kind}.html"
    write_outputs(doc, html=html, json_out=str(tmp_path / "x.json"))
    text = html.read_text()
    assert "<svg" in text and "http://" not in text.split("<svg", 1)[0]  # self-contained
    png = tmp_path / f"{kind}.png"
    _screenshot(html, png)
    share, colours = _ink(png)
    assert share > 0.03, f"screenshot almost blank ({share:.1%} ink)"
    assert colours > 20, "no chart colours in the screenshot"


def test_a_small_run_is_drawn_in_mib_with_the_legend_beside_the_curves(tmp_path: Path):
    from tests.recordings import NATIVE_CGROUP, Recorder
    from uvmtrace.analysis.charts import timeline_chart
    from uvmtrace.analysis.report import build_report

    rec = Recorder(target_cgroups=[NATIVE_CGROUP])
    rec.metadata["cgroups"] = {str(NATIVE_CGROUP): {"path": "/app"}}
    rec.charge(0.5, NATIVE_CGROUP, "NR_ANON_MAPPED", 150 << 20)  # 150 MiB
    rec.charge(1.5, NATIVE_CGROUP, "NR_ANON_MAPPED", -(150 << 20))
    svg = timeline_chart(build_report(rec.write(tmp_path / "s.parquet"))["timeline"], "run")
    labels = re.findall(r"<!-- ([^>]*) -->", svg)  # matplotlib names each text it draws
    assert "MiB charged" in labels and "GiB charged" not in labels
    assert "150" in labels  # the peak reads as 150 on its axis, not 0.15
    # the legend lies right of the axes: its text starts beyond the plot's right edge
    assert _legend_x(svg, "/app") > _axes_right(svg)


def _text_x(svg: str, label: str) -> float:
    """x of the transform of the text group matplotlib drew for `label`."""
    block = svg[svg.index(f"<!-- {label} -->") :]
    return float(re.search(r"translate\(([\d.]+)", block)[1])


def _legend_x(svg: str, label: str) -> float:
    return _text_x(svg, label)


def _axes_right(svg: str) -> float:
    """Right edge of the first axes' background patch (`patch_2`, a path `M x0 y0 L x1 y0 ...`)."""
    patch = re.search(r'<g id="patch_2">\s*<path d="M ([\d.]+) [\d.]+\s*L ([\d.]+)', svg)
    return max(float(patch[1]), float(patch[2]))
