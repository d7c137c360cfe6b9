"""JSON output, in the shape of report_schema.json."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=False, default=str)


def load_schema() -> dict[str, Any]:
    return json.loads(
        resources.files("uvmtrace.analysis").joinpath("report_schema.json").read_text()
    )
