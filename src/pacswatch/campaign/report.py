"""Rendering campaign data for people (rich tables) and programs (JSON, CSV).

Rows come from the repository as dicts; nothing here reads the database or decides anything.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import IO, Any, Iterable, Mapping, Sequence

from rich.console import Console
from rich.table import Table

from pacswatch.output import SEVERITY_STYLE

FINDING_COLUMNS = ("id", "ip", "port", "severity", "status", "service", "transport", "product", "product_version",
                   "studies", "patients", "first_seen", "last_seen", "fixed_at", "reopen_count")
CHANGE_WORDS = {"new": "new", "fixed": "fixed", "reopened": "reopened", "severity": "severity changed"}


def when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return "" if value is None else str(value)


def endpoint(ip: str, port: int | None) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return host if port is None else f"{host}:{port}"


def _sev(value: str | None) -> str:
    return f"[{SEVERITY_STYLE.get(value, '')}]{value}[/]" if value else "-"


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
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([when(row.get(c)) if isinstance(row.get(c), datetime) else
                         ("" if row.get(c) is None else row.get(c)) for c in columns])
    out.write(buffer.getvalue())


def findings_table(rows: Sequence[Mapping]) -> Table:
    table = Table(title=f"Findings ({len(rows)})")
    for column in ("id", "endpoint", "severity", "status", "product", "studies", "patients", "first seen",
                   "last seen", "fixed at"):
        table.add_column(column)
    for r in rows:
        product = " ".join(p for p in (r.get("product"), r.get("product_version")) if p)
        table.add_row(str(r["id"]), endpoint(r["ip"], r["port"]), _sev(r["severity"]), r["status"], product,
                      "" if r.get("studies") is None else str(r["studies"]),
                      "" if r.get("patients") is None else str(r["patients"]),
                      when(r["first_seen"]), when(r["last_seen"]), when(r.get("fixed_at")))
    return table


def changes_table(events: Sequence[Mapping], title: str) -> Table:
    table = Table(title=title)
    for column in ("endpoint", "change", "severity"):
        table.add_column(column)
    for e in events:
        old, new = e.get("old_severity"), e.get("new_severity")
        severity = f"{_sev(old)} → {_sev(new)}" if old and new and old != new else _sev(new or old)
        table.add_row(endpoint(e["ip"], e["port"]), CHANGE_WORDS.get(e["kind"], e["kind"]), severity)
    return table


def summary_line(changes) -> str:
    parts = [f"{changes.new} new", f"{changes.fixed} fixed", f"{changes.reopened} reopened"]
    if changes.raised or changes.lowered:
        parts.append(f"{changes.raised} severity up, {changes.lowered} down")
    return ", ".join(parts)


def print_changes(console: Console, outcome) -> None:
    """The end-of-scan summary of what changed since the last look at these targets."""
    previous = outcome.previous
    since = (f"since scan {previous['id']} of the same targets ({when(previous['created_at'])})" if previous
             else "(first scan of these targets)")
    console.print(f"scan {outcome.scan_id} {outcome.status}: changes {since}: {summary_line(outcome.changes)}",
                  highlight=False)
    if outcome.events:
        console.print(changes_table(outcome.events[:200], f"Changes in scan {outcome.scan_id}"))
        if len(outcome.events) > 200:
            console.print(f"... and {len(outcome.events) - 200} more: pacswatch findings --since ...")


def history_table(title: str, observations: Sequence[Mapping], events: Sequence[Mapping]) -> Table:
    """Observations and lifecycle events of one endpoint (or host), in time order."""
    table = Table(title=title)
    for column in ("when", "endpoint", "scan", "status", "severity", "product", "studies", "patients", "finding"):
        table.add_column(column)
    by_obs = {}
    for e in events:
        by_obs.setdefault(e.get("observation_id"), []).append(CHANGE_WORDS.get(e["kind"], e["kind"]))
    for o in observations:
        product = " ".join(p for p in (o.get("product"), o.get("product_version")) if p)
        table.add_row(when(o["scanned_at"]), endpoint(o["ip"], o["port"]), str(o["scan_id"]), o["status"],
                      _sev(o["severity"]), product, "" if o["studies"] is None else str(o["studies"]),
                      "" if o["patients"] is None else str(o["patients"]), ", ".join(by_obs.get(o["id"], [])))
    return table


def stats_tables(stats: Mapping) -> list[Table]:
    now = stats["now"]
    head = Table(title="Exposure now")
    for column in ("exposed services", "studies", "patients", *stats["findings_by_status"].keys()):
        head.add_column(column)
    head.add_row(str(now["exposed_services"]), str(now["studies"]), str(now["patients"]),
                 *(str(v) for v in stats["findings_by_status"].values()))
    tables = [head]
    for key, title in (("findings_by_severity", "Open findings by severity"),
                       ("exposed_by_product", "Exposed services by product"),
                       ("exposed_by_port", "Exposed services by port")):
        table = Table(title=title, min_width=len(title) + 4)
        table.add_column(title.split(" by ")[1])
        table.add_column("count", justify="right")
        for name, count in sorted(stats[key].items(), key=lambda kv: -kv[1]):
            table.add_row(_sev(name) if key == "findings_by_severity" else name, str(count))
        tables.append(table)
    over = Table(title="Over time (per scan)")
    for column in ("scan", "when", "kind", "exposed", "studies", "patients"):
        over.add_column(column)
    for r in stats["over_time"]:
        over.add_row(str(r["scan"]), when(r["at"]), r["kind"], str(r["exposed_services"]), str(r["studies"]),
                     str(r["patients"]))
    tables.append(over)
    return tables


def scans_table(rows: Sequence[Mapping]) -> Table:
    table = Table(title="Scans")
    for column in ("id", "kind", "status", "done", "size", "started", "updated", "by"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["id"]), r["kind"], r["status"], str(r["done"]), str(r["plan_size"]), when(r["created_at"]),
                      when(r["updated_at"]), r.get("operator") or "")
    return table


def entries_table(title: str, rows: Sequence[Mapping], columns: Sequence[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for r in rows:
        table.add_row(*(when(r.get(c)) for c in columns))
    return table
