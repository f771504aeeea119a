"""The lab's layout and what a correct scanner should report for each endpoint.

`expected` maps dotted paths into a record's JSON (`Record.model_dump(mode="json")`, e.g.
`dicom.find.studies`) to a value. A plain value must be equal; `{"one_of": [...]}` accepts any
listed value; `{"at_least": n}` a number >= n. A path through a null object reads as null.
Paths not listed are not checked. The decisions for the hostile peers (docs/design.md leaves them
open) are documented next to each entry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID

from pacswatch.lab.acceptor import LAB_IMPLEMENTATION_UID
from pacswatch.lab.data import DEFAULT_PATIENTS, DEFAULT_STUDIES
from pacswatch.lab.pacs import BIG_ARCHIVE, GUESSABLE_AE_TITLE

PACS, HOSTILE, FAST, TRAP = "pacs", "hostile", "fast", "trap"

_PYND = {"dicom.association.implementation_class_uid": PYNETDICOM_IMPLEMENTATION_UID}
_ARCHIVE = {
    "status": "success", "severity": "critical", "service": "dicom",
    "dicom.association.accepted": True, "dicom.promiscuous": False, "dicom.echo": True,
    "dicom.find.allowed": True, "dicom.find.studies": DEFAULT_STUDIES, "dicom.find.patients": DEFAULT_PATIENTS,
    "dicom.find.capped": False, "dicom.store_accepted": True, "dicom.move_accepted": True,
    "dicom.get_accepted": True, "dicom.worklist_accepted": False, **_PYND,
}
_NOT_DICOM = {"severity": None, "dicom": None}


@dataclass(frozen=True)
class Spec:
    kind: str
    family: str  # pacs (pynetdicom), hostile (raw asyncio), fast (the fast responder), trap (lab/traps.py)
    host: int  # last-octet offset from the lab's base address: a kind keeps its address
    description: str
    expected: Mapping[str, Any]
    tls: bool = False
    default: bool = True


SPECS: tuple[Spec, ...] = (
    Spec("open-archive", PACS, 10, "accepts any AE; echo, FIND (5 patients, 12 studies), MOVE/GET/store contexts",
         {**_ARCHIVE, "transport": "tcp", "dicom.accepts_any_called_ae": True}),
    Spec("ae-restricted", PACS, 11, "the archive behind called AE LABPACS: unknown called AE -> (1,1,7)",
         {"status": "rejected", "severity": "low", "service": "dicom", "dicom.association.accepted": False,
          "dicom.association.reject.result": "rejected-permanent", "dicom.association.reject.source": "service-user",
          "dicom.association.reject.reason": "called-ae-not-recognized", "dicom.accepts_any_called_ae": False,
          "dicom.called_ae_found": None}),
    Spec("calling-ae-restricted", PACS, 12, "only calling AE LABCLIENT: unknown calling AE -> (1,1,3)",
         {"status": "rejected", "severity": "low", "service": "dicom", "dicom.association.accepted": False,
          "dicom.association.reject.source": "service-user",
          "dicom.association.reject.reason": "calling-ae-not-recognized"}),
    Spec("echo-only", PACS, 13, "Verification only",
         {"status": "success", "severity": "medium", "service": "dicom", "dicom.association.accepted": True,
          "dicom.echo": True, "dicom.find.studies": None, "dicom.find.patients": None,
          "dicom.store_accepted": False, "dicom.move_accepted": False, "dicom.get_accepted": False, **_PYND}),
    Spec("store-only", PACS, 14, "CT, MR, Secondary Capture storage only; no query",
         {"status": "success", "severity": "high", "service": "dicom", "dicom.association.accepted": True,
          "dicom.store_accepted": True, "dicom.move_accepted": False, "dicom.get_accepted": False,
          "dicom.find.studies": None, **_PYND}),
    Spec("find-empty", PACS, 15, "echo and FIND allowed, empty archive",
         {"status": "success", "severity": "high", "service": "dicom", "dicom.association.accepted": True,
          "dicom.echo": True, "dicom.find.allowed": True, "dicom.find.studies": 0, "dicom.find.patients": 0,
          "dicom.store_accepted": False, **_PYND}),
    Spec("tls-open", PACS, 16, "the open archive inside TLS, self-signed certificate",
         {**_ARCHIVE, "transport": "tls", "tls.handshake": True, "tls.self_signed": True,
          "tls.client_cert_required": False}, tls=True),
    Spec("tls-client-cert", PACS, 17, "the open archive inside TLS demanding a client certificate",
         {"transport": "tls", "status": "rejected", "severity": "low", "tls.client_cert_required": True}, tls=True),
    # Hostile peers: not DICOM, so no severity; the status says how the exchange failed.
    # Deception (deception.py): a silent peer that holds the connection, or one that drips, is a tarpit.
    Spec("tarpit", HOSTILE, 18, "accepts TCP, never sends, never closes",
         {"status": "io-timeout", **_NOT_DICOM, "deception.verdict": "tarpit"}),
    Spec("huge-length", HOSTILE, 19, "answers with an A-ASSOCIATE-AC header claiming 0xFFFFFFF0 bytes, then drips",
         {"status": "protocol-error", **_NOT_DICOM}),
    Spec("random-bytes", HOSTILE, 20, "answers with random bytes",
         {"status": "protocol-error", **_NOT_DICOM}),
    Spec("slow-drip", HOSTILE, 21, "a valid A-ASSOCIATE-AC, one byte per second (beats per-read timeouts)",
         {"status": "io-timeout", **_NOT_DICOM, "deception.verdict": "tarpit"}),
    # Accepts Verification and FIND, then aborts the first request: an accepted association
    # from an unknown caller, nothing more (assess: medium); echo fails.
    Spec("abort-after-request", HOSTILE, 22, "accepts the association, answers the first request with A-ABORT",
         {"status": "success", "severity": "medium", "service": "dicom", "dicom.association.accepted": True,
          "dicom.echo": False, "dicom.find.studies": None, "dicom.store_accepted": False,
          "dicom.association.implementation_class_uid": LAB_IMPLEMENTATION_UID}),
    # Service detection (probes/detect.py): an HTTP answer to the association request gets the
    # web probe, which finds a web server with nothing PACS-related (no severity).
    Spec("http-not-dicom", HOSTILE, 23, "answers like an HTTP server (400 Bad Request)",
         {"status": "success", "service": "http", "severity": None, "dicom": None}),
    Spec("reset", HOSTILE, 24, "accepts, then resets the connection (RST) when the request arrives",
         {"status": "protocol-error", **_NOT_DICOM}),
    Spec("fast-responder", FAST, 25, "the benchmark acceptor: all contexts but the control, echo and FIND succeed, 0 results",
         {"status": "success", "severity": "high", "service": "dicom", "dicom.association.accepted": True,
          "dicom.accepts_any_called_ae": True, "dicom.promiscuous": False, "dicom.echo": True,
          "dicom.find.allowed": True, "dicom.find.studies": 0, "dicom.find.patients": 0,
          "dicom.store_accepted": True, "dicom.move_accepted": True, "dicom.get_accepted": True,
          "dicom.worklist_accepted": True, "dicom.released": True,
          "dicom.association.implementation_class_uid": LAB_IMPLEMENTATION_UID}),
    Spec("ae-guessable", PACS, 26, f"the archive behind called AE {GUESSABLE_AE_TITLE}, a product default",
         {**_ARCHIVE, "transport": "tcp", "dicom.accepts_any_called_ae": False,
          "dicom.called_ae_found": GUESSABLE_AE_TITLE}),
    Spec("big-archive", PACS, 27, f"open archive with {BIG_ARCHIVE[0]} patients, {BIG_ARCHIVE[1]} studies (find limit)",
         {"status": "success", "severity": "critical", "dicom.find.studies": {"at_least": 1},
          "dicom.find.patients": BIG_ARCHIVE[0], **_PYND}, default=False),
    # Traps (lab/traps.py): a scanner reports what they expose and must see that they are traps.
    # accept-all is judged so with the random port check on its block (Lab.random_port_options).
    Spec("honeypot", TRAP, 28, "the qeeqbox honeypots DICOM server rebuilt: AE PACS, every context, stub handlers",
         {"status": "success", "service": "dicom", "severity": "high", "dicom.association.accepted": True,
          "dicom.accepts_any_called_ae": True, "dicom.echo": True, "dicom.find.allowed": False,
          "dicom.find.refusal": "status 0xC311", "dicom.store_accepted": True, **_PYND,
          "deception.verdict": "honeypot"}),
    Spec("accept-all", TRAP, 29, "accepts TCP on its port and 64 others, closes without a byte",
         {"status": "protocol-error", **_NOT_DICOM, "deception.verdict": "accepts-all"}),
)
BY_KIND = {spec.kind: spec for spec in SPECS}
DEFAULT_KINDS = tuple(spec.kind for spec in SPECS if spec.default)


@dataclass(frozen=True)
class LabEndpoint:
    name: str
    ip: str
    port: int
    kind: str
    expected: Mapping[str, Any] = field(default_factory=dict)
    family: str = PACS
    transport: str = "tcp"
    description: str = ""

    @property
    def address(self) -> tuple[str, int]:
        return self.ip, self.port

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["expected"] = dict(self.expected)
        return data


def resolve_kinds(names: Iterable[str] | None) -> list[Spec]:
    """The specs for `names` (kinds; None = the default set; "all" = every kind), in layout order."""
    if names is None:
        wanted = set(DEFAULT_KINDS)
    else:
        wanted = set()
        for name in names:
            if name == "all":
                wanted.update(BY_KIND)
            elif name in BY_KIND:
                wanted.add(name)
            else:
                raise ValueError(f"unknown lab endpoint {name!r}; known: {', '.join(BY_KIND)}")
    return [spec for spec in SPECS if spec.kind in wanted]


# ---------------------------------------------------------------- comparing records

def _lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def _ok(want: Any, have: Any) -> bool:
    if isinstance(want, Mapping) and "one_of" in want:
        return have in want["one_of"]
    if isinstance(want, Mapping) and "at_least" in want:
        return isinstance(have, (int, float)) and not isinstance(have, bool) and have >= want["at_least"]
    return have == want


def _as_dict(record: Any) -> Mapping[str, Any]:
    if hasattr(record, "model_dump"):
        return record.model_dump(mode="json")
    return record


def check_record(endpoint: LabEndpoint, record: Any) -> list[str]:
    """Mismatches between what `endpoint` expects and `record` (a Record or its JSON dict)."""
    data = _as_dict(record)
    problems = []
    for path, want in endpoint.expected.items():
        have = _lookup(data, path)
        if not _ok(want, have):
            problems.append(f"{path}: expected {want!r}, got {have!r}")
    return problems


@dataclass
class Comparison:
    endpoint: LabEndpoint
    record: Mapping[str, Any] | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        return self.record is not None and not self.problems


def compare(manifest: Iterable[LabEndpoint], records: Iterable[Any]) -> list[Comparison]:
    """Match records to endpoints by (ip, port); with several records for one endpoint (one per
    probe), the one that fits best is judged. Records for addresses outside the lab are ignored."""
    by_address: dict[tuple[object, object], list[Mapping[str, Any]]] = {}
    for record in records:
        data = _as_dict(record)
        by_address.setdefault((data.get("ip"), data.get("port")), []).append(data)
    out = []
    for endpoint in manifest:
        candidates = by_address.get(endpoint.address, [])
        if not candidates:
            out.append(Comparison(endpoint, None, ["no record for this endpoint"]))
            continue
        judged = min(((c, check_record(endpoint, c)) for c in candidates), key=lambda pair: len(pair[1]))
        out.append(Comparison(endpoint, judged[0], judged[1]))
    return out
