"""Rendering campaign data for people (rich tables) and programs (JSON, CSV).

Rows come from the repository as dicts; nothing here reads the database or decides anything.
Every value shown goes into a table as `rich.text.Text`, cleaned (output.shown): a database
written before text.py may hold a peer's markup or terminal escapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pacswatch.findings.lifecycle import MARKED
from pacswatch.output import (
    address_key,
    severity_rank,
    severity_text,
    shown,
)

FINDING_COLUMNS = ("id", "ip", "port", "severity", "status", "service", "transport", "product", "product_version",
                   "studies", "patients", "capped", "first_seen", "last_seen", "fixed_at", "reopen_count",
                   "missed_since", "deception_verdict", "deception_confidence", "deception_override",
                   "override_reason", "override_by", "override_at")
CHANGE_WORDS = {"new": "new", "fixed": "fixed", "reopened": "reopened", "severity": "severity changed",
                "missed": "missed (open until a second miss)", "seen-again": "seen again", "opted-out": "opted out",
                **MARKED}


def deception_text(verdict: str | None, confidence: float | None, override: str | None = None) -> str:
    """A finding's or a look's deception verdict for a table: an analyst's override says so."""
    if override:
        return f"{override} (analyst)"
    if verdict:
        return f"{verdict} {confidence or 0:.2f}"
    return ""


def _record_deception(o: Mapping) -> str:
    d = (o.get("record") or {}).get("deception") or {}
    return deception_text(d.get("verdict"), d.get("confidence"))


def when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return "" if value is None else str(value)


def endpoint(ip: str, port: int | None) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return host if port is None else f"{host}:{port}"


_sev = severity_text


def _product(row: Mapping) -> Text:
    return shown(" ".join(str(p) for p in (row.get("product"), row.get("product_version")) if p))


def _count(value: Any, capped: Any = False) -> str:
    """A count; '≥N' when the query was cancelled at --find-limit (there are at least N)."""
    if value is None:
        return ""
    return f"≥{value}" if capped else str(value)


def by_severity(rows: Iterable[Mapping], severity: str = "severity") -> list[Mapping]:
    """Most severe first, then numeric address order, then port (10.0.0.9 before 10.0.0.10)."""
    return sorted(rows, key=lambda r: (severity_rank(r.get(severity)), address_key(r["ip"], r.get("port"))))


# Columns that identify a row: never wrapped on a narrow terminal. The others wrap, and a word
# too long for its column (a product name) folds onto the next line rather than being cut.
_KEEP = ("id", "endpoint", "severity", "status", "state")


def _add_columns(table: Table, columns: Iterable[str]) -> None:
    for column in columns:
        table.add_column(column, no_wrap=column in _KEEP, overflow="fold")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json(out: IO[str], value: Any) -> None:
    out.write(json.dumps(_jsonable(value), indent=2, sort_keys=True) + "\n")


def write_csv(out: IO[str], rows: Iterable[Mapping], columns: Sequence[str]) -> None:
    """CSV through the one writer (notify/csvexport.py): a product name such as `=2+5` from a
    peer, or a TAB first, cannot run as a formula in the spreadsheet that opens it."""
    # Imported here: the tables and JSON need no record model.
    from pacswatch.notify.csvexport import csv_text

    out.write(csv_text(columns, ([when(r.get(c)) if isinstance(r.get(c), datetime) else r.get(c) for c in columns]
                                 for r in rows), line_end="\n"))


def findings_table(rows: Sequence[Mapping]) -> Table:
    table = Table(title=f"Findings ({len(rows)})")
    _add_columns(table, ("id", "endpoint", "severity", "status", "product", "studies", "patients", "deception",
                         "first seen", "last seen", "fixed at"))
    for r in rows:
        # An open finding missed once waits for a second miss to be fixed (two-miss rule): say so,
        # or a server switched off reads as still exposed with nothing to show why.
        status = f"{r['status']}, missed once" if r.get("missed_since") else r["status"]
        table.add_row(str(r["id"]), shown(endpoint(r["ip"], r["port"])), _sev(r["severity"]), shown(status),
                      _product(r), _count(r.get("studies"), r.get("capped")), _count(r.get("patients"), r.get("capped")),
                      shown(deception_text(r.get("deception_verdict"), r.get("deception_confidence"),
                                           r.get("deception_override"))),
                      when(r["first_seen"]), when(r["last_seen"]), when(r.get("fixed_at")))
    return table


def changes_table(events: Sequence[Mapping], title: str) -> Table:
    table = Table(title=title)
    _add_columns(table, ("endpoint", "change", "severity"))
    for e in events:
        old, new = e.get("old_severity"), e.get("new_severity")
        severity = Text.assemble(_sev(old), " → ", _sev(new)) if old and new and old != new else _sev(new or old)
        table.add_row(shown(endpoint(e["ip"], e["port"])), shown(CHANGE_WORDS.get(e["kind"], e["kind"])), severity)
    return table


def _change_key(event: Mapping) -> tuple:
    """Changes most severe first (the worse of old and new), then by address and port."""
    worst = min(severity_rank(event.get("new_severity")), severity_rank(event.get("old_severity")))
    return (worst, address_key(event["ip"], event.get("port")))


def summary_line(changes) -> str:
    parts = [f"{changes.new} new", f"{changes.fixed} fixed", f"{changes.reopened} reopened"]
    if changes.raised or changes.lowered:
        parts.append(f"{changes.raised} severity up, {changes.lowered} down")
    if changes.missed or changes.seen_again:  # the two-miss rule: open findings waiting for a second miss
        parts.append(f"{changes.missed} missed once (still open), {changes.seen_again} seen again")
    return ", ".join(parts)


def print_changes(console: Console, outcome, top: int | None = 200) -> None:
    """The end-of-scan summary of what changed since the last look at these targets."""
    previous = outcome.previous
    since = (f"since scan {previous['id']} of the same targets ({when(previous['created_at'])})" if previous
             # Changes are each endpoint's against its own last look, whichever scan made it: an
             # endpoint seen before by a scan of other targets (a range, a rescan) is not new.
             else "(no earlier scan of the same targets; each endpoint against its last look)")
    console.print(f"scan {outcome.scan_id} {outcome.status}: changes {since}: {summary_line(outcome.changes)}",
                  highlight=False)
    if outcome.events:
        # Cut at `top` rows (None: all), most severe first: a scan of a large range may change thousands.
        events = sorted(outcome.events, key=_change_key)
        top = len(events) if top is None else top
        console.print(changes_table(events[:top], f"Changes in scan {outcome.scan_id}"))
        if len(events) > top:
            console.print(f"... and {len(events) - top} more: pacswatch findings --scan {outcome.scan_id}",
                          highlight=False, markup=False)


def history_table(title: str, observations: Sequence[Mapping], events: Sequence[Mapping]) -> Table:
    """Observations and lifecycle events of one endpoint (or host), in time order."""
    table = Table(title=shown(title))  # it names what the operator typed
    _add_columns(table, ("when", "endpoint", "scan", "status", "severity", "product", "studies", "patients",
                         "deception", "finding"))
    by_obs: dict[object, list[str]] = {}
    for e in events:
        by_obs.setdefault(e.get("observation_id"), []).append(CHANGE_WORDS.get(e["kind"], e["kind"]))
    for o in observations:
        capped = ((o.get("record") or {}).get("dicom") or {}).get("find", {}).get("capped")
        # A distributed scan's vantage beside its scan: seen from one place and not another shows.
        scan = f"{o['scan_id']} @{o['vantage']}" if o.get("vantage") else str(o["scan_id"])
        table.add_row(when(o["scanned_at"]), shown(endpoint(o["ip"], o["port"])), shown(scan), shown(o["status"]),
                      _sev(o["severity"]), _product(o), _count(o["studies"], capped), _count(o["patients"], capped),
                      shown(_record_deception(o)), shown(", ".join(by_obs.get(o["id"], []))))
    return table


def stats_tables(stats: Mapping) -> list[Table]:
    now = stats["now"]
    head = Table(title="Exposure now")
    for column in ("exposed services", "studies", "patients", *stats["findings_by_status"].keys()):
        head.add_column(shown(column))
    head.add_row(str(now["exposed_services"]), str(now["studies"]), str(now["patients"]),
                 *(str(v) for v in stats["findings_by_status"].values()))
    tables = [head]
    for key, title in (("findings_by_severity", "Open findings by severity"),
                       ("exposed_by_product", "Exposed services by product"),
                       ("exposed_by_port", "Exposed services by port"),
                       ("traps_by_verdict", "Open findings left out as traps (not exposures) by verdict"),
                       ("triaged_by_verdict", "Open findings a person marked false positive or suppressed, by verdict")):
        table = Table(title=title, min_width=len(title) + 4)
        table.add_column(title.split(" by ")[1])
        table.add_column("count", justify="right")
        if key == "findings_by_severity":  # in severity order, as everywhere
            ordered = sorted(stats[key].items(), key=lambda kv: severity_rank(kv[0]))
        else:
            ordered = sorted(stats.get(key, {}).items(), key=lambda kv: (-kv[1], str(kv[0])))
        for name, count in ordered:
            table.add_row(_sev(name) if key == "findings_by_severity" else shown(name), str(count))
        tables.append(table)
    over = Table(title="Over time (per scan)")
    for column in ("scan", "when", "kind", "exposed", "studies", "patients"):
        over.add_column(column)
    for r in stats["over_time"]:
        over.add_row(str(r["scan"]), when(r["at"]), shown(r["kind"]), str(r["exposed_services"]),
                     str(r["studies"]), str(r["patients"]))
    tables.append(over)
    return tables


def targets_summary(parameters: Mapping | None, width: int = 60) -> str:
    """What a scan was asked to scan, in one short cell: its targets and imported files, ports
    when few, cut at `width` characters with how many more."""
    parameters = parameters or {}
    parts = [str(t) for t in parameters.get("targets") or ()]
    parts += [f"masscan {p}" for p in parameters.get("masscan") or ()]
    parts += [f"zmap {p}" for p in parameters.get("zmap") or ()]
    text = ""
    for shown_count, part in enumerate(parts):
        candidate = f"{text} {part}".strip()
        if len(candidate) > width and text:
            return f"{text} (+{len(parts) - shown_count} more)"
        text = candidate
    ports = parameters.get("ports") or ()
    if text and 0 < len(ports) <= 4:
        text += " ports " + ",".join(str(p) for p in ports)
    return text


def scans_table(rows: Sequence[Mapping]) -> Table:
    table = Table(title="Scans")
    _add_columns(table, ("id", "kind", "status", "targets", "done", "size", "started", "updated", "by"))
    for r in rows:
        table.add_row(str(r["id"]), shown(r["kind"]), shown(r["status"]), shown(targets_summary(r.get("parameters"))),
                      str(r["done"]), str(r["plan_size"]), when(r["created_at"]), when(r["updated_at"]),
                      shown(r.get("operator") or ""))
    return table


def entries_table(title: str, rows: Sequence[Mapping], columns: Sequence[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for r in rows:
        table.add_row(*(shown(when(r.get(c))) for c in columns))
    return table
