"""The options `report` and `diff` share: where the report goes and how allocations are judged."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from uvmtrace.analysis.items import DEFAULT_MIN_ALLOC, DEFAULT_TOLERANCE

_OPTIONS = (
    click.option("--markdown", "markdown", type=click.Path(path_type=Path),
                 help="Write Markdown."),
    click.option("--html", "html", type=click.Path(path_type=Path),
                 help="Write self-contained HTML."),
    click.option("--json", "json_stdout", is_flag=True,
                 help="JSON on stdout (alone, for pipes)."),
    click.option("--json-out", "json_file", type=click.Path(path_type=Path, dir_okay=False),
                 help="Write JSON to this file."),
    click.option("--min-alloc-mib", default=DEFAULT_MIN_ALLOC >> 20, show_default=True,
                 help="Smallest allocation considered for KV sizing."),
    click.option("--tolerance", default=DEFAULT_TOLERANCE, show_default=True,
                 help="How close bytes/free must be to a known fraction."),
)  # fmt: skip


def report_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The shared options; the command receives `json_out`: "-" (stdout), a path, or None."""

    @functools.wraps(f)
    def merged(*args: Any, json_stdout: bool, json_file: Path | None, **kw: Any) -> Any:
        return f(*args, json_out="-" if json_stdout else (str(json_file) if json_file else None),
                 **kw)  # fmt: skip

    for option in reversed(_OPTIONS):
        merged = option(merged)
    return merged


def write(
    doc: dict[str, Any], markdown: Path | None, html: Path | None, json_out: str | None
) -> None:
    # Imported here: matplotlib and the renderers are not needed by `record`'s start-up.
    from uvmtrace.analysis.output import write_outputs

    write_outputs(doc, markdown=markdown, html=html, json_out=json_out)
