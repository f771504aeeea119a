"""Rendering records for people and programs: JSON Lines, tables, the summary, one-endpoint reports."""

from __future__ import annotations

import errno
import heapq
import ipaddress
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Protocol

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # annotations only: the campaign commands' tables need no probe or pydantic model
    from pacswatch.record import Record


def stderr_console() -> Console:
    """The console for progress, tables and errors. Wide when not a terminal (logs, CI), so
    tables written to a file do not wrap every row."""
    console = Console(stderr=True)
    if not console.is_terminal:
        console = Console(stderr=True, width=140)
    return console


def stdout_console() -> Console:
    """The console for what a command prints on stdout: colours on a terminal; wide and plain
    for a pipe or a file, so a table does not wrap every row."""
    return Console() if sys.stdout.isatty() else Console(width=200, no_color=True)


SEVERITY_ORDER = ("critical", "high", "medium", "low")
SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


# Every string shown on a terminal goes through one of these two: Rich reads markup (`[/]`,
# `[link=...]`) in a plain str given to print() or add_row(), and a peer's text, or a database
# written before text.py cleaned at entry, may hold both markup and terminal escapes.
def shown(value: object) -> Text:
    """A value as terminal text: cleaned (no escape sequence, no line break) and never markup."""
    # Imported here: text.py loads pydantic, which building the parser (--help) must not.
    from pacswatch.text import clean

    return Text("" if value is None else clean(value, limit=4096))


MAX_ERROR_DETAILS = 20  # a wrong file of 100,000 lines is recognised from its first few


def error_line(prefix: str, error: object) -> Text:
    """An error for a person, e.g. `pacswatch scan: ...`: the prefix in bold red, the message as
    text (it may quote a target, a file name or a peer, and `[/]` in it is not markup). An error
    with `details` (every bad line of a target file) shows its `head`, then one cleaned detail a
    line, at most MAX_ERROR_DETAILS: a newline inside a message is escaped, never a new line."""
    details = getattr(error, "details", ())
    if not details:
        return Text(prefix, style="bold red").append(" ").append_text(shown(error))
    text = Text(prefix, style="bold red").append(" ").append_text(shown(getattr(error, "head", error)))
    for detail in details[:MAX_ERROR_DETAILS]:
        text.append("\n  ").append_text(shown(detail))
    if len(details) > MAX_ERROR_DETAILS:
        text.append(f"\n  ... and {len(details) - MAX_ERROR_DETAILS} more")
    return text


def severity_text(severity: str | None) -> Text:
    """A severity in its colour; "-" when there is none."""
    if not severity:
        return Text("-")
    text = shown(severity)
    text.stylize(SEVERITY_STYLE.get(severity, ""))
    return text


def address_key(ip: str, port: int | None = None) -> tuple:
    """Numeric address order (IPv4 before IPv6), then port: 10.0.0.9 before 10.0.0.10. A value
    that is not an address (a damaged row) sorts last, by its text."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return (7, 0, str(ip), port or 0)
    return (address.version, int(address), "", port or 0)


def severity_rank(severity: str | None) -> int:
    """0 for critical ... 3 for low, 4 for none: the sort key of "most severe first"."""
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)


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

    def flush_due(self) -> bool:
        """Flush if `flush_interval` has passed since the last flush (a record left out of the
        output, by `scan --open`, still lets the records before it be counted done); True when
        it flushed."""
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
            # Only the counts known: a flood that was cut off counted studies, never patients.
            more = "≥" if d.find.capped else ""
            counts = [f"{more}{n} {what}" for n, what in ((d.find.studies, "studies"), (d.find.patients, "patients"))
                      if n is not None]
            parts.append(f"find: {', '.join(counts)}" if counts else "find allowed")
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


def worst_first(records: Iterable[Record], top: int | None = None) -> tuple[list[Record], list[Record]]:
    """Endpoints that answered something, most severe first, then by address and port: the first
    `top` (all when None), and the others, unsorted. A heap, so a scan with 10,000 findings does
    not sort them all to show 25."""
    answered = [r for r in records if r.service is not None or r.severity is not None]

    def key(r: Record) -> tuple:
        return (severity_rank(r.severity), address_key(r.ip, r.port))

    if top is None or top >= len(answered):
        return sorted(answered, key=key), []
    first = heapq.nsmallest(top, answered, key=key)
    chosen = {id(r) for r in first}
    return first, [r for r in answered if id(r) not in chosen]


def findings_table(records: Iterable[Record], title: str = "Endpoints") -> Table:
    """Endpoints that answered something, in the order given (see `worst_first`)."""
    table = Table(title=title, show_lines=False)
    for column in ("endpoint", "severity", "status", "product"):
        table.add_column(column, no_wrap=True)
    table.add_column("facts")
    for r in records:
        table.add_row(endpoint_label(r), severity_text(r.severity), str(r.status), shown(_product(r)),
                      shown(_facts(r)))
    return table


def more_line(left_out: Sequence[Record], scan_id: int | None) -> Text:
    """What follows a table cut at --top: how many rows it left out and the command showing them.
    `findings` lists findings only, so the rows without a severity (a web server that is not a
    PACS) are counted apart: the command's count and this line's agree."""
    command = f"pacswatch findings --scan {scan_id}" if scan_id is not None else "pacswatch findings"
    with_finding = sum(1 for r in left_out if r.severity is not None)
    without = len(left_out) - with_finding
    parts = [f"... and {with_finding} more: {command}"] if with_finding else []
    if without:
        parts.append(f"{'' if with_finding else '... and '}{without} more answered without a finding")
    return Text("; ".join(parts))


def _rank(severity: str | None) -> int:  # higher is worse, 0 for none
    return len(SEVERITY_ORDER) - severity_rank(severity)


class ScanCounts(Protocol):
    """What the summary reads of a scan's counts: scan/runner.py's ScanStats, described here
    rather than imported, since scan renders through this module (output sits below scan)."""

    @property
    def total(self) -> int: ...
    @property
    def done(self) -> int: ...
    @property
    def interrupted(self) -> bool: ...
    @property
    def by_status(self) -> Mapping[str, int]: ...
    @property
    def by_severity(self) -> Mapping[str, int]: ...


def summary_table(stats: ScanCounts, elapsed: float, per_host: dict[str, str] | None = None) -> Table:
    table = Table(title="Scan summary" + (" (interrupted)" if stats.interrupted else ""), show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rate = stats.done / elapsed if elapsed > 0 else 0.0
    table.add_row("endpoints done", f"{stats.done} / {stats.total}")
    table.add_row("elapsed", f"{elapsed:.1f} s ({rate:.0f} endpoints/s)")
    for sev in SEVERITY_ORDER:
        table.add_row(severity_text(sev), str(stats.by_severity.get(sev, 0)))
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


def host_table(records: Iterable[Record], top: int | None = None) -> Table:
    """One row per host: its endpoints with findings and its worst severity (the `top` worst
    hosts, all when None)."""
    by_host: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.severity:
            by_host[r.ip].append(r)
    cut = top is not None and len(by_host) > top
    table = Table(title="Hosts with findings" + (f" (the worst {top} of {len(by_host)})" if cut else ""))
    for column in ("host", "worst", "endpoints"):
        table.add_column(column)
    ordered = sorted(by_host.items(), key=lambda kv: (-max(_rank(r.severity) for r in kv[1]), address_key(kv[0])))
    for host, recs in ordered[:top] if top is not None else ordered:
        worst = max(recs, key=lambda r: _rank(r.severity)).severity
        endpoints = ", ".join(f"{r.port}/{r.service or '?'} {r.severity}" for r in sorted(recs, key=lambda r: r.port))
        table.add_row(shown(host), severity_text(worst), shown(endpoints))
    return table


def print_report(console: Console, record: Record) -> None:
    """The full report of one endpoint, for a person (`pacswatch probe`)."""
    sev = record.severity or "none"
    head = Text.assemble((endpoint_label(record), "bold"), f" over {record.transport}: status ",
                         (str(record.status), "bold"))
    if record.detail:
        head.append(" (").append_text(shown(record.detail)).append(")")
    console.print(head, highlight=False)
    console.print(Text.assemble("severity: ", (sev, SEVERITY_STYLE.get(sev, "bold")), "   product: ",
                                shown(_product(record) or "unknown"), f"   took {record.elapsed_ms} ms"),
                  highlight=False)
    for reason in record.reasons:
        console.print(Text("  • ").append_text(shown(reason)), highlight=False)
    for title, rows in report_facts(record):
        _facts_table(console, title, rows)


def report_facts(record: Record) -> list[tuple[str, list[tuple[str, object]]]]:
    """The facts of `probe`'s report, as (title, [(fact, value), ...]) per section (DICOM, Web,
    TLS); a value of None is a fact not known. The terminal prints them through shown(); the
    dashboard's endpoint page shows the same rows (HTML-escaped)."""
    sections: list[tuple[str, list[tuple[str, object]]]] = []
    d = record.dicom
    if d is not None:
        a = d.association
        rows: list[tuple[str, object]] = [
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
            ("C-FIND matches for a made-up UID", d.find.random_matches),
            ("C-FIND answers at another level than asked", d.find.off_level_identifiers),
            ("studies", _count(d.find.studies, d.find.capped)),
            ("patients", _count(d.find.patients, d.find.capped)),
            ("storage accepted", d.store_accepted),
            ("C-MOVE accepted", d.move_accepted),
            ("C-GET accepted", d.get_accepted),
            ("worklist accepted", d.worklist_accepted),
            ("released cleanly", d.released),
        ]
        sections.append(("DICOM", rows))
    if record.http is not None:
        h = record.http
        sections.append(("Web", [
            ("url", h.url), ("status code", h.status_code), ("title", h.title),
            ("auth", h.auth), ("realm or identity provider", h.realm),
            ("components", ", ".join(h.components) or None), ("viewer backends", ", ".join(h.backends) or None),
            ("patients", h.patients), ("studies", h.studies), ("series", h.series), ("instances", h.instances),
            ("DICOMweb", "open" if h.dicomweb.open else "present" if h.dicomweb.present else None),
            ("writable (inferred, not tried)", h.writable),
            ("default credentials tried (opt-in)", h.default_credentials_tried or None),
        ]))
    if deception := _deception_rows(record):
        sections.append(("Deception", deception))
    if record.tls is not None:
        t = record.tls
        sections.append(("TLS", [
            ("handshake", t.handshake), ("version", t.version), ("cipher", t.cipher), ("subject", t.subject),
            ("issuer", t.issuer), ("self-signed", t.self_signed), ("not after", t.not_after),
            ("expired", t.expired), ("client certificate required", t.client_cert_required), ("error", t.error)]))
    return sections


def _deception_rows(record: Record) -> list[tuple[str, object]]:
    """The deception verdict and each signal behind it (deception.py), with its source."""
    rows: list[tuple[str, object]] = []
    d, b = record.deception, record.behaviour
    rp = b.random_ports if b is not None else None
    if rp is not None:
        rows.append(("random high ports accepting TCP", f"{len(rp.open)} of {len(rp.tried)}"))
    if d is None:
        return rows
    rows.append(("verdict", d.verdict or "none (signals below the reporting floor)"))
    rows.append(("confidence", f"{d.confidence:.2f}"))
    for sig in d.signals:
        rows.append((f"signal {sig.name}", f"{sig.detail} [{sig.source}]"))
    return rows


def _facts_table(console: Console, title: str, rows) -> None:
    table = Table(show_header=False, title=title)
    table.add_column("fact")
    table.add_column("value")
    for name, value in rows:
        if value is not None:
            table.add_row(name, shown(value))
    console.print(table)


def _count(n: int | None, capped: bool) -> str | None:
    if n is None:
        return None
    return f"at least {n}" if capped else str(n)
