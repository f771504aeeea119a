"""The endpoints of a case as CSV: the notice's attachment and the per-owner export.

Columns are the Exposure allowlist (exposure.py): counts and protocol facts, nothing else.
"""

from __future__ import annotations

import csv
import io
from typing import Iterable

from pacswatch.notify.exposure import Exposure

COLUMNS = ("ip", "port", "transport", "service", "product", "product_version", "severity", "status",
           "first_seen", "last_seen", "studies", "patients", "reasons")


def _cell(value) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    text = " | ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    # A cell starting with = + - @ runs as a formula in spreadsheet programs (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def exposures_csv(exposures: Iterable[Exposure], *, extra: dict[str, str] | None = None) -> str:
    """CSV text with a header; `extra` adds constant columns (owner, contact) to every row."""
    extra = extra or {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 line ends
    writer.writerow([*extra.keys(), *COLUMNS])
    for e in exposures:
        row = e.to_dict()
        writer.writerow([*(_cell(v) for v in extra.values()), *(_cell(row[c]) for c in COLUMNS)])
    return out.getvalue()
