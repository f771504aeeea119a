"""CSV, the one writer: the notice's attachment, the per-owner export and `findings --format csv`.

Every cell goes through `text.csv_cell`: a cell starting with = + - @ TAB CR or LF gets a
leading apostrophe, so a spreadsheet shows it instead of running it (CSV injection), and
control characters become visible escapes. An owner opens the notice's attachment in a
spreadsheet; an operator opens the export in one.

The exposure columns are the Exposure allowlist (exposure.py): counts and protocol facts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from pacswatch.notify.exposure import Exposure
from pacswatch.text import csv_cell

COLUMNS = ("ip", "port", "transport", "service", "product", "product_version", "severity", "status",
           "first_seen", "last_seen", "studies", "patients", "reasons")


def _plain(value: object) -> object:
    """A value as one cell: a time in ISO 8601, a list joined with " | "."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return " | ".join(str(v) for v in value)
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]], *, line_end: str = "\r\n") -> str:
    """CSV text: the header, then the rows, every cell neutralised. RFC 4180 line ends unless
    `line_end` says otherwise; None is an empty cell, numbers stay numbers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerow([csv_cell(c) for c in header])
    for row in rows:
        writer.writerow([csv_cell(_plain(v)) for v in row])
    return out.getvalue()


def exposures_csv(exposures: Iterable[Exposure], *, extra: dict[str, str] | None = None,
                  traps: Mapping[tuple[str, int], str] | None = None) -> str:
    """CSV text with a header; `extra` adds constant columns (owner, contact) to every row.
    `traps` (the export's: endpoint -> why it is judged a trap) adds a last `deception` column,
    empty for the endpoints not in it."""
    extra = extra or {}
    header = [*extra.keys(), *COLUMNS, *(("deception",) if traps is not None else ())]
    rows = ([*extra.values(), *(row[c] for c in COLUMNS),
             *((traps.get((e.ip, e.port)),) if traps is not None else ())]
            for e, row in ((e, e.to_dict()) for e in exposures))
    return csv_text(header, rows)
