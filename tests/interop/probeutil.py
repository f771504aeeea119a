"""Small helpers shared by the probe tests."""

from __future__ import annotations

from typing import Any


def describe(record: Any) -> str:
    """The record as JSON, for assertion messages."""
    return record.model_dump_json(indent=1, exclude={"scanned_at", "elapsed_ms"})
