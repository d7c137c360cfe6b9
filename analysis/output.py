"""Writes a built report or diff where the user asked: terminal, Markdown, HTML, JSON."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from uvmtrace.analysis.render_json import to_json
from uvmtrace.analysis.render_markdown import diff_markdown, report_markdown, summary_markdown
from uvmtrace.analysis.render_terminal import print_diff, print_report, print_summary
from uvmtrace.recording.errors import UserError


def _write(path: Path, text: str) -> None:
    # reports are plain user files, but never follow a planted symlink when run as root
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write_outputs(
    doc: dict[str, Any],
    *,
    markdown: Path | None = None,
    html: Path | None = None,
    json_out: str | None = None,
) -> None:
    kind = doc["kind"]
    if markdown:
        md = {"diff": diff_markdown, "summary": summary_markdown}.get(kind, report_markdown)
        _write(markdown, md(doc))
    if html:
        # matplotlib takes half a second to import: only HTML reports pay for it
        from uvmtrace.analysis.render_html import diff_html, report_html, summary_html

        page = {"diff": diff_html, "summary": summary_html}.get(kind, report_html)
        _write(html, page(doc))
    if json_out == "-":
        sys.stdout.write(to_json(doc) + "\n")
        return  # stdout carries the JSON alone, so it can be piped
    if json_out:
        _write(Path(json_out), to_json(doc))
    {"diff": print_diff, "summary": print_summary}.get(kind, print_report)(doc)


def write_frame(path: Path, frame: Any) -> None:
    """A polars frame as Parquet, never through a planted symlink."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as f:
        frame.write_parquet(f)
