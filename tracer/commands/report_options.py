"""The options `report` and `diff` share: where the report goes and how allocations are judged."""

from __future__ import annotations

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
    click.option("--json", "json_out", is_flag=False, flag_value="-", default=None,
                 help="JSON to FILE, or to stdout with a bare --json."),
    click.option("--min-alloc-mib", default=DEFAULT_MIN_ALLOC >> 20, show_default=True,
                 help="Smallest allocation considered for KV sizing."),
    click.option("--tolerance", default=DEFAULT_TOLERANCE, show_default=True,
                 help="How close bytes/free must be to a known fraction."),
)  # fmt: skip


def report_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def write(
    doc: dict[str, Any], markdown: Path | None, html: Path | None, json_out: str | None
) -> None:
    # Imported here: matplotlib and the renderers are not needed by `record`'s start-up.
    from uvmtrace.analysis.output import write_outputs

    write_outputs(doc, markdown=markdown, html=html, json_out=json_out)
