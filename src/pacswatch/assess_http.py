"""Assessment of a web endpoint: a pure function from the record to a severity and reasons.

critical  a data-bearing API answers without credentials and holds data (counts > 0), or a
          product's default credentials are accepted
high      a data-bearing API answers without credentials with no data or an unknown amount
          (QIDO-RS cannot count without listing), or writes are allowed without credentials
medium    a viewer or admin page is served without credentials while its API asks for them
low       a PACS-related web interface that asks for a login, or whose API could not be checked
None      nothing PACS-related (an unrelated web server), or the endpoint did not answer

A static page is not exposure by itself (docs/dicom-reference.md §5.1): only the API decides critical and
high. Reasons are short sentences for a person, with counts and product facts, never data.
"""

from __future__ import annotations

from pacswatch.deception import judge
from pacswatch.record import HttpFacts, Record, Severity
from pacswatch.status import Status


def assess_http(record: Record) -> tuple[Severity | None, list[str]]:
    record.deception = judge(record)  # part of the assessment, as in assess.py
    facts = record.http
    if record.status != Status.SUCCESS or facts is None or not _pacs_related(facts):
        return None, []
    what = _name(facts)
    reasons: list[str] = []
    severity: Severity
    if facts.auth == "default-credentials":
        severity = Severity.CRITICAL
        reasons.append(f"{what} accepts its documented default credentials.")
    elif facts.auth == "open":
        total = _data_count(facts)
        if total:
            severity = Severity.CRITICAL
            reasons.append(f"{what} API answers without credentials and holds data ({_counts(facts)}).")
        elif total == 0:
            severity = Severity.HIGH
            reasons.append(f"{what} API answers without credentials (no data stored yet).")
        else:
            severity = Severity.HIGH
            reasons.append(f"{what} API answers without credentials (amount of data not counted).")
    elif facts.auth == "auth-required":
        page_open = facts.status_code is not None and 200 <= facts.status_code < 300 and facts.title
        login = f" ({facts.realm})" if facts.realm else ""
        if page_open:
            severity = Severity.MEDIUM
            reasons.append(f"{what} page is served without credentials; its API asks for a login{login}.")
        else:
            severity = Severity.LOW
            reasons.append(f"{what} is reachable and asks for a login{login}.")
    else:
        severity = Severity.LOW
        reasons.append(f"{what} web interface is reachable; its data API was not found or not checked.")
    if facts.dicomweb.open and facts.auth != "open":
        severity = max(severity, Severity.HIGH, key=lambda s: s.rank)
        reasons.append("DICOMweb (QIDO-RS) answers without credentials.")
    if facts.writable and facts.auth in ("open", "default-credentials"):
        severity = max(severity, Severity.HIGH, key=lambda s: s.rank)
        reasons.append("Uploads are accepted without credentials (inferred, not tried).")
    if facts.tls is not None:
        reasons.extend(_tls_reasons(facts))
    return severity, reasons


def _pacs_related(facts: HttpFacts) -> bool:
    return facts.product is not None or facts.dicomweb.present


def _name(facts: HttpFacts) -> str:
    if facts.product is None:
        return "A DICOMweb service"
    version = f" {facts.product.version}" if facts.product.version else ""
    return f"{facts.product.name}{version}"


def _data_count(facts: HttpFacts) -> int | None:
    counts = [c for c in (facts.patients, facts.studies, facts.series, facts.instances) if c is not None]
    return sum(counts) if counts else None


def _counts(facts: HttpFacts) -> str:
    parts = [f"{value} {label}" for label, value in (("patients", facts.patients), ("studies", facts.studies),
                                                      ("series", facts.series), ("instances", facts.instances))
             if value is not None]
    return ", ".join(parts)


def _tls_reasons(facts: HttpFacts) -> list[str]:
    tls = facts.tls
    out: list[str] = []
    if tls is None or not tls.handshake:
        return out
    if tls.version in ("TLSv1", "TLSv1.1", "SSLv3"):
        out.append(f"HTTPS offers a retired protocol version ({tls.version}).")
    if tls.expired:
        out.append("HTTPS certificate has expired.")
    return out
