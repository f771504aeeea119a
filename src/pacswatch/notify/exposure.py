"""An exposed service as notifications and exports show it: counts and protocol facts only.

Built from a Record (a scan) or from the store's findings joined with services; either way the
fields are the allowlist below, so nothing from a returned data set can reach a message, a CSV
or an IntelMQ event (docs/design.md, first rule): there is no free-form field to carry it.

The peer's own text is made safe here, once, for every way out (notice, CSV, IntelMQ): the
product name and the reasons are cleaned to one line (`text.clean`; a database written by an
older pacswatch may hold raw text), and a product version is kept only when it looks like one
(`text.version_or_none`): "1\n\nURGENT: call ..." is not a version and is not repeated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pacswatch.record import Record
from pacswatch.text import clean, clean_optional, version_or_none

# A reason is our sentence, but may quote a peer (a realm, a product version): one line, capped.
_REASON_LIMIT = 500


@dataclass(frozen=True)
class Exposure:
    ip: str
    port: int
    transport: str = "tcp"
    service: str | None = None  # dicom | http
    product: str | None = None
    product_version: str | None = None
    severity: str | None = None
    status: str = "open"  # the finding's: open | reopened | fixed
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    studies: int | None = None
    patients: int | None = None
    reasons: tuple[str, ...] = ()  # assess.py's sentences: ours, never the peer's data
    find_allowed: bool | None = None
    accepts_any_called_ae: bool | None = None
    called_ae: str | None = None  # the product-default called AE title that was accepted, if one was needed
    http_auth: str | None = None
    tls: bool = False
    client_cert_required: bool = False  # a TLS listener that demands a client certificate

    @property
    def protected(self) -> bool:
        """Reachable but refusing unknown callers or asking for a login (severity low): worth
        listing, not worth counting as exposed."""
        return self.severity == "low"

    @property
    def exposed(self) -> bool:
        return self.status in ("open", "reopened") and self.severity is not None

    @property
    def endpoint(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("first_seen", "last_seen"):
            out[k] = out[k].isoformat() if out[k] else None
        out["reasons"] = list(self.reasons)
        return out


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def from_record(record: Record, *, first_seen: datetime | None = None, status: str | None = None) -> Exposure:
    product = record.product
    dicom, http = record.dicom, record.http
    studies = patients = None
    if dicom is not None:
        studies, patients = dicom.find.studies, dicom.find.patients
    if http is not None and studies is None:
        studies, patients = http.studies, http.patients
    severity = getattr(record.severity, "value", record.severity)
    tls_facts = record.tls or (http.tls if http else None)
    return Exposure(
        ip=record.ip, port=record.port, transport=record.transport, service=record.service,
        product=clean_optional(product.name) if product else None,
        product_version=version_or_none(product.version) if product else None,
        severity=severity, status=status or ("open" if severity else "fixed"),
        first_seen=_utc(first_seen or record.scanned_at), last_seen=_utc(record.scanned_at),
        studies=studies, patients=patients, reasons=_reasons(record.reasons),
        find_allowed=dicom.find.allowed if dicom else None,
        accepts_any_called_ae=dicom.accepts_any_called_ae if dicom else None,
        called_ae=clean_optional(dicom.called_ae_found) if dicom else None,
        http_auth=http.auth if http else None,
        tls=record.transport == "tls" or (http is not None and http.url.startswith("https")),
        client_cert_required=bool(tls_facts and tls_facts.client_cert_required),
    )


def _reasons(reasons) -> tuple[str, ...]:
    return tuple(clean(r, limit=_REASON_LIMIT) for r in reasons or ())


def from_finding(row: dict[str, Any], record: dict[str, Any] | None = None) -> Exposure:
    """From a row of Repository.findings() (findings joined with services), and optionally the
    latest observation's record JSON for the protocol facts."""
    dicom = (record or {}).get("dicom") or {}
    http = (record or {}).get("http") or {}
    tls_facts = (record or {}).get("tls") or http.get("tls") or {}
    return Exposure(
        ip=row["ip"], port=int(row["port"]), transport=row.get("transport") or "tcp", service=row.get("service"),
        product=clean_optional(row.get("product")), product_version=version_or_none(row.get("product_version")),
        severity=row.get("severity"), status=row.get("status", "open"), first_seen=_utc(row.get("first_seen")),
        last_seen=_utc(row.get("fixed_at") or row.get("last_seen")),
        studies=row.get("studies"), patients=row.get("patients"), reasons=_reasons(row.get("reasons")),
        find_allowed=(dicom.get("find") or {}).get("allowed"), accepts_any_called_ae=dicom.get("accepts_any_called_ae"),
        called_ae=clean_optional(dicom.get("called_ae_found")),
        http_auth=http.get("auth"), tls=(row.get("transport") == "tls") or str(http.get("url", "")).startswith("https"),
        client_cert_required=bool(tls_facts.get("client_cert_required")),
    )
