"""The HTML report opens in a real browser (headless Chromium) with its charts drawn."""

from __future__ import annotations

import os
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
