"""Assessment: a pure function from an observation to a severity and the reasons for it.

critical  patient data visible without credentials (studies or patients counted > 0)
high      unauthenticated association with query allowed (0 results), or storage or retrieve
          contexts accepted
medium    unauthenticated association, echo only
low       a DICOM service that rejects unknown AE titles or demands a client certificate
None      not DICOM (or nothing answered)

Reasons are short sentences for a person; they carry counts and protocol facts, never data.
"""

from __future__ import annotations

# Imported here, not at the first web record: by then a scan may have no descriptor left to
# read a module with (tests/net/test_fdlimit.py runs out of them on purpose).
from pacswatch.assess_http import assess_http
from pacswatch.record import Record, Severity
from pacswatch.status import Status


def assess(record: Record) -> tuple[Severity | None, list[str]]:
    if record.service == "http" or record.http is not None:
        return assess_http(record)  # the web tier has its own rules
    if record.service != "dicom":
        return None, []
    facts = record.dicom
    accepted = facts is not None and facts.association.accepted
    reasons: list[str] = []
    severity: Severity | None = None
    if accepted and facts is not None:
        severity, reasons = _assess_accepted(record)
    elif record.tls is not None and record.tls.client_cert_required:
        severity = Severity.LOW
        reasons.append("TLS listener demands a client certificate before any DICOM is spoken.")
    elif record.status == Status.REJECTED:
        severity = Severity.LOW
        why = facts.association.reject.reason if facts and facts.association.reject else "an abort"
        reasons.append(f"DICOM service refuses unknown callers ({why}).")
    reasons.extend(_tls_reasons(record))
    return severity, reasons


def _assess_accepted(record: Record) -> tuple[Severity, list[str]]:
    facts = record.dicom
    assert facts is not None
    reasons = []
    how = "with a random called AE title" if facts.accepts_any_called_ae else (
        f"with the product-default called AE title {facts.called_ae_found}" if facts.called_ae_found else "")
    reasons.append(f"Accepts an association from an unknown caller {how}".rstrip() + ".")
    find = facts.find
    counts = [(n, what) for n, what in ((find.studies, "studies"), (find.patients, "patients")) if n]
    if counts:
        at_least = "at least " if find.capped else ""
        listed = " and ".join(f"{at_least}{n} {what}" for n, what in counts)
        reasons.append(f"C-FIND without credentials lists {listed}: patient data is exposed.")
        return Severity.CRITICAL, reasons
    severity = Severity.MEDIUM
    if find.allowed:
        severity = Severity.HIGH
        reasons.append("C-FIND is allowed to an unknown caller (no results seen).")
    if facts.store_accepted:
        severity = Severity.HIGH
        reasons.append("Storage contexts accepted: an unknown caller may be able to write (not tried).")
    if facts.move_accepted or facts.get_accepted:
        severity = Severity.HIGH
        kinds = "/".join(k for k, ok in (("C-MOVE", facts.move_accepted), ("C-GET", facts.get_accepted)) if ok)
        reasons.append(f"Retrieve contexts ({kinds}) accepted: an unknown caller may be able to retrieve (not tried).")
    if facts.promiscuous:
        reasons.append("It also accepted a made-up SOP class, so accepted contexts are weak evidence.")
    if find.allowed is False and find.refusal:
        reasons.append(f"C-FIND was refused ({find.refusal}).")
    if severity is Severity.MEDIUM:
        reasons.append("Only verification (C-ECHO) was offered." if facts.echo else "No query, storage or retrieve offered.")
    return severity, reasons


def _tls_reasons(record: Record) -> list[str]:
    tls = record.tls
    if tls is None or not tls.handshake:
        return []
    out = []
    if tls.version in ("TLSv1", "TLSv1.1", "SSLv3"):
        out.append(f"TLS offers the retired {tls.version}.")
    if tls.expired:
        out.append("The TLS certificate has expired.")
    if tls.self_signed:
        out.append("The TLS certificate is self-signed.")
    return out
