"""Rendering records for people and programs: JSON Lines, tables, the summary, one-endpoint reports."""

from __future__ import annotations

import errno
import time
from collections import defaultdict
from typing import IO, TYPE_CHECKING, Iterable

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # annotations only: the campaign commands' tables need no probe or pydantic model
    from pacswatch.record import Record
    from pacswatch.scan.runner import ScanStats


def stderr_console() -> Console:
    """The console for progress, tables and errors. Wide when not a terminal (logs, CI), so
    tables written to a file do not wrap every row."""
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=140)
    return console


SEVERITY_ORDER = ("critical", "high", "medium", "low")
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


class OutputError(Exception):
    """The records could not be written where the user asked (a full disk, a closed pipe). The
    scan stops; what the output lacks is not counted done, so `--resume` probes it again."""

    def __init__(self, error: OSError) -> None:
        why = "its reader closed the pipe" if error.errno == errno.EPIPE else (error.strerror or str(error))
        super().__init__(f"cannot write the output: {why}")
        self.errno = error.errno


class JsonLinesWriter:
    """One record per line. Flushed at most every `flush_interval` seconds and by `flush()`:
    a flush per record was a write system call per endpoint. An interrupted scan flushes on
    its way out, and every record is in the database as well."""

    def __init__(self, stream: IO[str], flush_interval: float = 0.2) -> None:
        self.stream = stream
        self.flush_interval = flush_interval
        self._flushed = time.monotonic()
        # The first failure, for good: a failed write discards the buffer, so a later flush of
        # the (now empty) buffer would "succeed" and pass lost records for written ones.
        self.failed: OutputError | None = None

    def write(self, record: Record) -> bool:
        """Write one record; True when this write flushed the stream."""
        if self.failed is not None:
            raise self.failed
        try:
            self.stream.write(record.model_dump_json(exclude_none=False) + "\n")
        except OSError as exc:  # the buffer was full and its write failed
            self.failed = OutputError(exc)
            raise self.failed from exc
        now = time.monotonic()
        if now - self._flushed >= self.flush_interval:
            self.flush(now)
            return True
        return False

    def flush(self, now: float | None = None) -> None:
        if self.failed is not None:
            raise self.failed
        try:
            self.stream.flush()
        except OSError as exc:
            self.failed = OutputError(exc)
            raise self.failed from exc
        self._flushed = time.monotonic() if now is None else now


def endpoint_label(record: Record) -> str:
    from pacswatch.probes.base import Endpoint

    return str(Endpoint(record.ip, record.port))


def _product(record: Record) -> str:
    if record.product is None:
        return ""
    return record.product.name + (f" {record.product.version}" if record.product.version else "")


def _facts(record: Record) -> str:
    d = record.dicom
    parts = []
    if record.transport == "tls":
        parts.append("tls")
    if d is not None:
        if d.association.accepted:
            parts.append("accepts any AE" if d.accepts_any_called_ae else f"AE {d.called_ae_found}")
        elif d.association.reject:
            parts.append(f"rejected: {d.association.reject.reason}")
        if d.echo:
            parts.append("echo")
        if d.find.allowed:
            more = "≥" if d.find.capped else ""
            parts.append(f"find: {more}{d.find.studies} studies, {more}{d.find.patients} patients")
        elif d.find.allowed is False:
            parts.append("find refused")
        if d.store_accepted:
            parts.append("store")
        if d.move_accepted or d.get_accepted:
            parts.append("retrieve")
    if record.http is not None:
        h = record.http
        parts.append(f"http {h.status_code} {h.auth or ''}".strip())
        if h.studies is not None:
            parts.append(f"{h.studies} studies")
    if record.tls is not None and record.tls.client_cert_required:
        parts.append("client cert required")
    return ", ".join(parts)


def findings_table(records: Iterable[Record], title: str = "Endpoints") -> Table:
    """Endpoints that answered something, worst first."""
    rows = [r for r in records if r.service is not None or r.severity is not None]
    rows.sort(key=lambda r: (-(_rank(r.severity)), r.ip, r.port))
    table = Table(title=title, show_lines=False)
    for column in ("endpoint", "severity", "status", "product"):
        table.add_column(column, no_wrap=True)
    table.add_column("facts")
    for r in rows:
        sev = r.severity or "-"
        table.add_row(endpoint_label(r), f"[{SEVERITY_STYLE.get(sev, '')}]{sev}[/]" if r.severity else "-",
                      str(r.status), _product(r), _facts(r))
    return table


def _rank(severity: str | None) -> int:
    return 4 - SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0


def summary_table(stats: ScanStats, elapsed: float, per_host: dict[str, str] | None = None) -> Table:
    table = Table(title="Scan summary" + (" (interrupted)" if stats.interrupted else ""), show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rate = stats.done / elapsed if elapsed > 0 else 0.0
    table.add_row("endpoints done", f"{stats.done} / {stats.total}")
    table.add_row("elapsed", f"{elapsed:.1f} s ({rate:.0f} endpoints/s)")
    for sev in SEVERITY_ORDER:
        table.add_row(f"[{SEVERITY_STYLE[sev]}]{sev}[/]", str(stats.by_severity.get(sev, 0)))
    for status, n in sorted(stats.by_status.items(), key=lambda kv: -kv[1]):
        table.add_row(f"status {status}", str(n))
    if per_host:
        table.add_row("hosts with findings", str(len(per_host)))
    return table


def worst_per_host(records: Iterable[Record]) -> dict[str, str]:
    """host → its worst severity, for hosts with any finding (one host, many endpoints)."""
    worst: dict[str, str] = {}
    for r in records:
        if r.severity and _rank(r.severity) > _rank(worst.get(r.ip)):
            worst[r.ip] = r.severity
    return worst


def host_table(records: Iterable[Record]) -> Table:
    """One row per host: its endpoints with findings and its worst severity."""
    by_host: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.severity:
            by_host[r.ip].append(r)
    table = Table(title="Hosts with findings")
    for column in ("host", "worst", "endpoints"):
        table.add_column(column)
    for host, recs in sorted(by_host.items(), key=lambda kv: -max(_rank(r.severity) for r in kv[1])):
        worst = max(recs, key=lambda r: _rank(r.severity)).severity
        endpoints = ", ".join(f"{r.port}/{r.service or '?'} {r.severity}" for r in sorted(recs, key=lambda r: r.port))
        table.add_row(host, f"[{SEVERITY_STYLE[worst]}]{worst}[/]", endpoints)
    return table


def print_report(console: Console, record: Record) -> None:
    """The full report of one endpoint, for a person (`pacswatch probe`)."""
    sev = record.severity or "none"
    console.print(f"[bold]{endpoint_label(record)}[/] over {record.transport}: status [bold]{record.status}[/]"
                  + (f" ({record.detail})" if record.detail else ""))
    console.print(f"severity: [{SEVERITY_STYLE.get(sev, 'bold')}]{sev}[/]   product: {_product(record) or 'unknown'}"
                  f"   took {record.elapsed_ms} ms")
    for reason in record.reasons:
        console.print(f"  • {reason}")
    d = record.dicom
    if d is not None:
        a = d.association
        rows = [
            ("association", "accepted" if a.accepted else "rejected"),
            ("called AE sent", a.called_ae),
            ("calling AE sent", a.calling_ae),
            ("reject", f"{a.reject.result}, {a.reject.source}, {a.reject.reason}" if a.reject else None),
            ("accepts any called AE", d.accepts_any_called_ae),
            ("default called AE found", d.called_ae_found),
            ("implementation class UID", a.implementation_class_uid),
            ("implementation version", a.implementation_version_name),
            ("max PDU length", a.max_pdu_length),
            ("accepted contexts", ", ".join(a.accepted_contexts) if a.accepted_contexts else None),
            ("accepts made-up SOP class", d.promiscuous),
            ("C-ECHO", d.echo),
            ("C-FIND allowed", d.find.allowed),
            ("C-FIND refusal", d.find.refusal),
            ("studies", _count(d.find.studies, d.find.capped)),
            ("patients", _count(d.find.patients, d.find.capped)),
            ("storage accepted", d.store_accepted),
            ("C-MOVE accepted", d.move_accepted),
            ("C-GET accepted", d.get_accepted),
            ("worklist accepted", d.worklist_accepted),
            ("released cleanly", d.released),
        ]
        _facts_table(console, "DICOM", rows)
    if record.http is not None:
        h = record.http
        _facts_table(console, "Web", (
            ("url", h.url), ("status code", h.status_code), ("title", h.title),
            ("auth", h.auth), ("realm or identity provider", h.realm),
            ("components", ", ".join(h.components) or None), ("viewer backends", ", ".join(h.backends) or None),
            ("patients", h.patients), ("studies", h.studies), ("series", h.series), ("instances", h.instances),
            ("DICOMweb", "open" if h.dicomweb.open else "present" if h.dicomweb.present else None),
            ("writable (inferred, not tried)", h.writable),
            ("default credentials tried (opt-in)", h.default_credentials_tried or None),
        ))
    if record.tls is not None:
        t = record.tls
        _facts_table(console, "TLS", (
            ("handshake", t.handshake), ("version", t.version), ("cipher", t.cipher), ("subject", t.subject),
            ("issuer", t.issuer), ("self-signed", t.self_signed), ("not after", t.not_after),
            ("expired", t.expired), ("client certificate required", t.client_cert_required), ("error", t.error)))


def _facts_table(console: Console, title: str, rows) -> None:
    table = Table(show_header=False, title=title)
    table.add_column("fact")
    table.add_column("value")
    for name, value in rows:
        if value is not None:
            table.add_row(name, str(value))
    console.print(table)


def _count(n: int | None, capped: bool) -> str | None:
    if n is None:
        return None
    return f"at least {n}" if capped else str(n)
