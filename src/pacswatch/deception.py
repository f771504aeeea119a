"""Deception: is this endpoint a trap (a honeypot, a tarpit, a host that accepts every port, a
vendor's demo) rather than a hospital's archive? Pure: a record in, a verdict out.

Each signal is a row of `RULES`: a name, the verdict it points to, a weight (how sure one
sighting makes us, 0..1), where the fact comes from, and how a real server could show it too
(docs/deception.md lists them). A rule's matcher reads only what the record already holds
(protocol facts, counts, the peer's behaviour on the wire) and returns a short detail, or None.

The verdict: the weights of the signals that point to one verdict combine as independent
evidence (1 - product of (1 - weight)); the verdict with the highest combined weight wins if it
reaches REPORT_FLOOR. Below that the signals are still listed, with no verdict: one weak sign is
a reason to look, not a label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from pacswatch.record import Deception, Record, Signal
from pacswatch.status import Status

HONEYPOT, TARPIT, ACCEPTS_ALL, DEMO = "honeypot", "tarpit", "accepts-all", "demo"
VERDICTS = (HONEYPOT, TARPIT, ACCEPTS_ALL, DEMO)
REPORT_FLOOR = 0.5
# What `notify` leaves out by default ([notify] deception_threshold).
DEFAULT_THRESHOLD = 0.7

# pynetdicom's and DCMTK's implementation class UID roots and pynetdicom's default maximum PDU
# (pynetdicom/_globals.py DEFAULT_MAX_LENGTH = 16382; DCMTK and Orthanc default to 16384).
PYNETDICOM_UID = "1.2.826.0.1.3680043.9.3811"
DCMTK_UID = "1.2.276.0.7230010.3"
PYNETDICOM_MAX_PDU = 16382
# pynetdicom's status for an exception in the SCP's own C-FIND handler (service_class.py).
PYNETDICOM_HANDLER_FAILED = "status 0xC311"
_STORAGE = ("ct-image-storage", "mr-image-storage", "secondary-capture-storage")

DICOMHAWK = "https://github.com/honeynet/DICOMHawk"
QEEQBOX = "https://github.com/qeeqbox/honeypots (honeypots/dicom_server.py)"
DICOMPOT = "https://github.com/nsmfoo/dicompot (contextmanager.go, server/server.go)"


@dataclass(frozen=True)
class KnownPeer:
    """An implementation class UID and version name pair shipped as a default by honeypot
    software (a real product would have to be configured into exactly this pair)."""

    uid: str
    version_name: str
    software: str
    source: str


KNOWN_HONEYPOTS: tuple[KnownPeer, ...] = (
    KnownPeer("1.2.826.0.1.3680043.9.3811.2.0.1", "ORTHANC", "DICOMHawk (default identity)",
              f"{DICOMHAWK} dicom_server/config.py"),
    KnownPeer("1.2.276.0.7230010.3.0.3.6.1", "OSIRIX001", "DICOMHawk (OsiriX profile)",
              f"{DICOMHAWK} src/dicomhawk/profiles/osirix.py"),
    KnownPeer("1.2.840.113619.6.96", "GE_PACS_REV_24", "DICOMHawk (ge_ct persona)",
              f"{DICOMHAWK} dicom_server/core/vendor_personas.py"),
    KnownPeer("1.3.12.2.1107.5.2", "syngo CT VA48A", "DICOMHawk (siemens_ct persona)",
              f"{DICOMHAWK} dicom_server/core/vendor_personas.py"),
    KnownPeer("1.3.46.670589.11", "PHILIPS_MR_56.1", "DICOMHawk (philips_mr persona)",
              f"{DICOMHAWK} dicom_server/core/vendor_personas.py"),
)

# Web pages of honeypot software and of vendors' public demo servers, by title.
HONEYPOT_TITLES = re.compile(r"\b(DICOMHawk|honeypot|T-Pot)\b", re.IGNORECASE)
DEMO_TITLES = re.compile(r"\b(demo|sandbox|public test server)\b", re.IGNORECASE)

Matcher = Callable[[Record], Optional[str]]


@dataclass(frozen=True)
class Rule:
    name: str
    verdict: str
    weight: float
    source: str
    false_positive: str
    match: Matcher


# ------------------------------------------------------------------ matchers


def _known_identity(r: Record) -> str | None:
    a = r.dicom.association if r.dicom else None
    if a is None or not a.accepted:
        return None
    for peer in KNOWN_HONEYPOTS:
        if a.implementation_class_uid == peer.uid and a.implementation_version_name == peer.version_name:
            return f"implementation {peer.uid} / {peer.version_name}: the default of {peer.software}"
    return None


def _dcmtk_with_pynetdicom_pdu(r: Record) -> str | None:
    a = r.dicom.association if r.dicom else None
    if a is None or not a.accepted or not a.implementation_class_uid:
        return None
    if a.implementation_class_uid.startswith(DCMTK_UID + ".") and a.max_pdu_length == PYNETDICOM_MAX_PDU:
        return (f"claims DCMTK ({a.implementation_class_uid}) but offers pynetdicom's default maximum PDU "
                f"of {PYNETDICOM_MAX_PDU} bytes")
    return None


def _no_implementation_uid(r: Record) -> str | None:
    a = r.dicom.association if r.dicom else None
    if a is not None and a.accepted and not a.implementation_class_uid:
        return "A-ASSOCIATE-AC without the mandatory implementation class UID (PS3.7 D.3.3.2)"
    return None


def _accepts_everything(r: Record) -> str | None:
    d = r.dicom
    if d is None or not d.association.accepted:
        return None
    every_storage = all(name in d.association.accepted_contexts for name in _STORAGE)
    if d.accepts_any_called_ae and d.promiscuous and every_storage:
        return "accepts a random called AE title, a made-up SOP class and every storage class offered"
    return None


def _canned_find(r: Record) -> str | None:
    n = r.dicom.find.random_matches if r.dicom else None
    if n:
        return f"C-FIND returned {n} match(es) for a made-up unique key no archive holds"
    return None


def _off_level_find(r: Record) -> str | None:
    n = r.dicom.find.off_level_identifiers if r.dicom else None
    if n:
        return (f"{n} C-FIND response(s) answered another Query/Retrieve Level than asked, or lacked "
                "that level's unique key")
    return None


def _same_count_every_level(r: Record) -> str | None:
    f = r.dicom.find if r.dicom else None
    if f is not None and f.studies and f.patients and f.studies == f.patients and f.studies > 1 and not f.capped:
        return f"the same count ({f.studies}) at the patient and the study level"
    return None


def _find_handler_fails(r: Record) -> str | None:
    d = r.dicom
    if d is None or not d.association.accepted or d.find.refusal != PYNETDICOM_HANDLER_FAILED:
        return None
    if not (d.association.implementation_class_uid or "").startswith(PYNETDICOM_UID):
        return None
    if d.echo and d.accepts_any_called_ae and d.store_accepted:
        return ("pynetdicom that accepts any called AE, echo and storage, but whose C-FIND handler fails "
                "(0xC311) on a well-formed query: every request answered by a stub")
    return None


def _echoed(r: Record) -> str | None:
    if r.behaviour is not None and r.behaviour.echoed:
        return "sent our A-ASSOCIATE-RQ back byte for byte"
    return None


def _silent_hold(r: Record) -> str | None:
    b = r.behaviour
    if b is not None and b.silent and b.held_open:
        return "accepted TCP, sent nothing and held the connection open past our deadline"
    return None


def _drip(r: Record) -> str | None:
    if r.behaviour is not None and r.behaviour.dripped:
        return "answered, but too slowly to finish one PDU before our deadline"
    return None


def _silent_close(r: Record) -> str | None:
    b = r.behaviour
    if b is not None and b.silent and not b.held_open:
        return "accepted TCP, then closed without a byte"
    return None


def _random_ports(r: Record) -> str | None:
    rp = r.behaviour.random_ports if r.behaviour else None
    if rp is None or len(rp.tried) < 3:
        return None
    if len(rp.open) * 4 >= len(rp.tried) * 3:  # three in four or more
        return f"{len(rp.open)} of {len(rp.tried)} random high ports accept TCP ({', '.join(map(str, rp.open[:8]))})"
    return None


def _web_title(pattern: re.Pattern[str]) -> Matcher:
    def match(r: Record) -> str | None:
        h = r.http
        if h is None:
            return None
        for text in (h.title, h.realm, *h.components):
            found = pattern.search(text) if text else None
            if found:
                return f"web page names {found.group(0)!r}"
        return None
    return match


RULES: tuple[Rule, ...] = (
    Rule("honeypot-identity", HONEYPOT, 0.9, DICOMHAWK + " (config.py, vendor_personas.py, profiles/)",
         "A real device configured with exactly this UID and version name pair; the pairs are the "
         "honeypot's own inventions (e.g. pynetdicom's UID root with the name ORTHANC).", _known_identity),
    Rule("dcmtk-uid-pynetdicom-pdu", HONEYPOT, 0.6,
         f"{DICOMHAWK} dicom_server/core/dicom_application.py (pynetdicom posing as DCMTK 3.6.2); "
         "pynetdicom _globals.py DEFAULT_MAX_LENGTH",
         "A DCMTK-based product whose maximum PDU was set to 16382 by hand.", _dcmtk_with_pynetdicom_pdu),
    Rule("no-implementation-uid", HONEYPOT, 0.35, DICOMPOT + " (go-netdicom's A-ASSOCIATE-AC)",
         "Small embedded stacks that break PS3.7 the same way.", _no_implementation_uid),
    Rule("accepts-everything", HONEYPOT, 0.5, DICOMPOT + " accepts every context; docs/dicom-reference.md",
         "A test SCP (storescp -pm, 'accept all' switches) left open; a misconfigured router of images.",
         _accepts_everything),
    Rule("canned-find", HONEYPOT, 0.6, "PS3.4 C.2.2.2.1 (single value matching on a unique key)",
         "An archive whose matching ignores the unique key (a bug, not unheard of): alone, it stays below "
         "the default notify threshold.", _canned_find),
    Rule("off-level-find", HONEYPOT, 0.6,
         "PS3.4 C.4.1.1.3.2 (a response carries the request's level and its keys); docs/dicom-reference.md §3.6",
         "An archive that leaves the unique key out of its answers, or writes a fixed level into them (a bug): "
         "alone, it stays below the default notify threshold.", _off_level_find),
    Rule("same-count-every-level", HONEYPOT, 0.15, "PS3.4 C.6 (patient and study levels count different entities)",
         "A small archive with exactly one study per patient: common, so the weight is low.",
         _same_count_every_level),
    Rule("stub-find-handler", HONEYPOT, 0.8, QEEQBOX + "; pynetdicom service_class.py (0xC311)",
         "A pynetdicom-based archive whose own C-FIND code crashes on the simplest query while it "
         "accepts any caller and every storage class: a broken server, not one in clinical use.",
         _find_handler_fails),
    Rule("echoes-request", HONEYPOT, 0.8, "RFC 862 echo services; low-interaction honeypots",
         "None known for a DICOM port.", _echoed),
    Rule("silent-hold", TARPIT, 0.6, "https://www.honeynet.org (EventHorizon tarpit); LaBrea",
         "A firewall or proxy that completes the handshake for a dead backend; a hung server.", _silent_hold),
    Rule("slow-drip", TARPIT, 0.7, "tarpits that answer a byte at a time (endlessh-style)",
         "A badly overloaded server or a very slow link.", _drip),
    Rule("silent-close", ACCEPTS_ALL, 0.3, "nmap's 'tcpwrapped'; SYN proxies",
         "TCP wrappers and firewalls that drop unknown clients after the handshake (common).", _silent_close),
    Rule("random-ports-open", ACCEPTS_ALL, 0.9, "the opt-in random high port check (scan --check-random-ports)",
         "A host that really serves many high ports; a load balancer answering for a whole address.",
         _random_ports),
    Rule("honeypot-web-page", HONEYPOT, 0.8, DICOMHAWK + " flask_logging_server/templates/base.html",
         "A page that merely mentions the word (a security vendor's own site).", _web_title(HONEYPOT_TITLES)),
    Rule("demo-web-page", DEMO, 0.5, "vendors' public demo servers name themselves so",
         "An internal test server holding real data.", _web_title(DEMO_TITLES)),
)
BY_NAME = {rule.name: rule for rule in RULES}


def judge(record: Record) -> Deception | None:
    """The deception verdict for one record; None when no signal fired (most records: nothing is
    added to them), and for endpoints that never answered."""
    if record.status in (Status.BLOCKED, Status.CONNECTION_REFUSED, Status.CONNECTION_TIMEOUT):
        return None
    signals: list[Signal] = []
    doubt: dict[str, float] = {}  # verdict -> product of (1 - weight)
    for rule in RULES:
        detail = rule.match(record)
        if detail is None:
            continue
        signals.append(Signal(name=rule.name, detail=detail, source=rule.source))
        doubt[rule.verdict] = doubt.get(rule.verdict, 1.0) * (1.0 - rule.weight)
    if not signals:
        return None
    verdict, least = min(doubt.items(), key=lambda item: item[1])
    confidence = round(1.0 - least, 2)
    return Deception(verdict=verdict if confidence >= REPORT_FLOOR else None, confidence=confidence, signals=signals)


def effective(verdict: str | None, confidence: float | None, override: str | None) -> tuple[str | None, float]:
    """The verdict that counts for a finding: an analyst's override wins over the signals
    ('real': not a trap; 'honeypot': a trap, whatever the signals said)."""
    if override == "real":
        return None, 0.0
    if override == "honeypot":
        return HONEYPOT, 1.0
    return verdict, float(confidence or 0.0)


def is_trap(verdict: str | None, confidence: float | None, override: str | None, threshold: float) -> bool:
    """Whether a finding is kept out of notices and counted apart: a verdict at or above the threshold."""
    v, c = effective(verdict, confidence, override)
    return v is not None and c >= threshold
