"""JSON output, in the shape of report_schema.json."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=False, default=str)


def load_schema(name: str = "report_schema.json") -> dict[str, Any]:
    """The schema of report/diff JSON, or of summary JSON (`summary_schema.json`)."""
    return json.loads(resources.files("uvmtrace.analysis").joinpath(name).read_text())
