"""The observation record: one JSON object per endpoint.

These models are the single source of the record's shape. `schema/record.schema.json` is
generated from them (`pacswatch schema`), and a test fails when the committed file differs.

Nothing in here may hold data taken from a returned data set other than counts (docs/design.md,
first rule). Every string field is either ours (names, statuses, reasons), a protocol fact the
server announces about itself (implementation UID, version name, certificate subject), or a
value we chose (the called AE title we sent). The server's facts are `PeerText` (text.py):
cleaned of control characters and capped in length as the record is built.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pacswatch import __version__
from pacswatch.status import Status
from pacswatch.text import PeerText

SCANNER = f"pacswatch/{__version__}"


class Severity(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    def __str__(self) -> str:  # tables and f-strings show the wire value
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.CRITICAL: 4, Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)


class Product(_Model):
    name: PeerText
    version: PeerText | None = None


class Reject(_Model):
    """A-ASSOCIATE-RJ decoded (PS3.8 9.3.4). Names such as `called-ae-not-recognized`;
    values the standard does not define come out as `unknown(n)`."""

    result: str
    source: str
    reason: str


# What one association showed; dicom.association.Association is the state machine that ran it.
class AssociationFacts(_Model):
    accepted: bool
    called_ae: str | None = Field(None, description="The called AE title of the association reported here.")
    calling_ae: str | None = None
    reject: Reject | None = None
    implementation_class_uid: PeerText | None = None
    implementation_version_name: PeerText | None = None
    max_pdu_length: int | None = None
    accepted_contexts: list[str] = Field(
        default_factory=list, description="Names of the abstract syntaxes the peer accepted."
    )


class Find(_Model):
    allowed: bool | None = Field(None, description="C-FIND permitted to an unknown caller; null if not tried.")
    studies: int | None = Field(None, description="Studies counted by a universal STUDY-level query.")
    patients: int | None = Field(None, description="Patients counted by a universal PATIENT-level query.")
    capped: bool = Field(False, description="A count reached --find-limit and was cancelled: 'at least'.")
    refusal: PeerText | None = Field(None, description="How a refused query was refused (status or abort).")
    random_matches: int | None = Field(
        None, description="Matches for the permission check's made-up UID, which no archive holds: canned answers.")
    off_level_identifiers: int | None = Field(
        None, description="C-FIND responses whose identifier answered another Query/Retrieve Level than asked, "
                          "or lacked that level's unique key (a count; no value is kept).")


class DicomFacts(_Model):
    association: AssociationFacts
    accepts_any_called_ae: bool | None = None
    called_ae_found: PeerText | None = Field(
        None, description="The product-default called AE title that was accepted after a random one was refused."
    )
    promiscuous: bool | None = Field(None, description="A random 2.25 abstract syntax was accepted.")
    echo: bool | None = None
    find: Find = Field(default_factory=Find)
    store_accepted: bool = False
    move_accepted: bool = False
    get_accepted: bool = False
    worklist_accepted: bool = False
    released: bool | None = Field(None, description="The peer answered our A-RELEASE-RQ (false: we aborted).")


class TlsFacts(_Model):
    handshake: bool
    version: PeerText | None = None
    cipher: PeerText | None = None
    self_signed: bool | None = None
    client_cert_required: bool = False
    subject: PeerText | None = None
    issuer: PeerText | None = None
    not_after: datetime | None = None
    expired: bool | None = None
    error: PeerText | None = None


class DicomWeb(_Model):
    present: bool = False
    open: bool = False


class HttpFacts(_Model):
    url: PeerText
    status_code: int | None = None
    product: Product | None = None
    auth: Literal["open", "auth-required", "default-credentials"] | None = None
    realm: PeerText | None = None
    patients: int | None = None
    studies: int | None = None
    series: int | None = None
    instances: int | None = None
    dicomweb: DicomWeb = Field(default_factory=DicomWeb)
    writable: bool | None = None
    title: PeerText | None = None
    components: list[PeerText] = Field(default_factory=list, description="Product parts recognised, e.g. 'Orthanc Explorer 2'.")
    backends: list[PeerText] = Field(
        default_factory=list, description="Backends a viewer names (OHIF qidoRoot), reported, never followed off-host.")
    default_credentials_tried: bool = Field(False, description="The opt-in --try-default-credentials made a login attempt.")
    tls: TlsFacts | None = None


class RandomPorts(_Model):
    tried: list[int] = Field(default_factory=list, description="Random high ports tried on the same address.")
    open: list[int] = Field(default_factory=list, description="Those that accepted a TCP connection.")


class Behaviour(_Model):
    """How the peer behaved on the wire, apart from what it said: facts the deception signals
    (deception.py) read. Only what was seen is set."""

    silent: bool | None = Field(None, description="TCP accepted, and not one byte came back.")
    held_open: bool | None = Field(None, description="Silent, and the connection was still open at our deadline.")
    dripped: bool | None = Field(None, description="Bytes came, too slowly to finish a PDU before our deadline.")
    echoed: bool | None = Field(None, description="The peer sent our own A-ASSOCIATE-RQ back.")
    random_ports: RandomPorts | None = Field(None, description="The opt-in random high port check.")


class Signal(_Model):
    name: str
    detail: PeerText
    source: str


class Deception(_Model):
    """What the deception signals say this endpoint is (deception.py); null verdict: nothing
    beyond an ordinary server was seen."""

    verdict: Literal["honeypot", "tarpit", "accepts-all", "demo"] | None = None
    confidence: float = Field(0.0, ge=0.0, le=1.0)
    signals: list[Signal] = Field(default_factory=list)


class Record(_Model):
    ip: str
    port: int
    transport: Literal["tcp", "tls"] = "tcp"
    status: Status
    detail: PeerText | None = Field(None, description="Why the status is what it is, for a person.")
    service: Literal["dicom", "http"] | None = None
    product: Product | None = None
    dicom: DicomFacts | None = None
    tls: TlsFacts | None = None
    http: HttpFacts | None = None
    behaviour: Behaviour | None = None
    severity: Severity | None = None
    reasons: list[str] = Field(default_factory=list)
    deception: Deception | None = None
    scanned_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    elapsed_ms: int = 0
    scanner: str | None = Field(SCANNER, description="pacswatch version that made the record.")


def record_schema() -> dict:
    """JSON Schema of the record, generated from the models above."""
    schema = Record.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pacswatch observation record"
    return schema


def record_schema_text() -> str:
    return json.dumps(record_schema(), indent=2, sort_keys=True) + "\n"
