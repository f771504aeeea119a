"""PS3.8 Upper Layer PDUs and items: frozen values, an encoder, a decoder and a framer.

Every PDU has a 6-byte header: type (1), reserved (1), length (4, big-endian) of what follows
(PS3.8 9.3.1). Items inside A-ASSOCIATE PDUs have a 4-byte header: type (1), reserved (1),
length (2) (PS3.8 9.3.2). Every length is checked against its parent before use, and the framer
refuses a length above the cap for its PDU type before buffering a byte of the body, so a peer
claiming 4 GB costs nothing (docs/dicom-reference.md §7.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union, cast

from pacswatch.dicom.buffer import Reader, Writer
from pacswatch.dicom.errors import LocalProtocolError, PeerProtocolError
from pacswatch.dicom.uids import APPLICATION_CONTEXT

# PDU types (PS3.8 9.3.1)
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

# Item types (PS3.8 9.3.2, 9.3.3, Annex D)
ITEM_APPLICATION_CONTEXT = 0x10
ITEM_PRESENTATION_CONTEXT_RQ = 0x20
ITEM_PRESENTATION_CONTEXT_AC = 0x21
ITEM_ABSTRACT_SYNTAX = 0x30
ITEM_TRANSFER_SYNTAX = 0x40
ITEM_USER_INFORMATION = 0x50
SUB_MAX_LENGTH = 0x51
SUB_IMPLEMENTATION_CLASS_UID = 0x52
SUB_ASYNC_OPS = 0x53
SUB_ROLE_SELECTION = 0x54
SUB_IMPLEMENTATION_VERSION_NAME = 0x55
SUB_USER_IDENTITY_RQ = 0x58
SUB_USER_IDENTITY_AC = 0x59

HEADER_LENGTH = 6
# Caps per PDU type on the announced length (docs/dicom-reference.md §7.3). P-DATA-TF's cap is the framer's.
FIXED_LENGTH = {A_ASSOCIATE_RJ: 4, A_RELEASE_RQ: 4, A_RELEASE_RP: 4, A_ABORT: 4}
MAX_ASSOCIATE_LENGTH = 64 * 1024
# Peers may send many items; more than this is abuse, not DICOM.
MAX_ITEMS = 512


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """Result (PS3.8 9.3.3.2): 0 acceptance, 1 user-rejection, 2 no-reason,
    3 abstract-syntax-not-supported, 4 transfer-syntaxes-not-supported."""

    id: int
    result: int
    transfer_syntax: str | None = None

    @property
    def accepted(self) -> bool:
        return self.result == 0


@dataclass(frozen=True, slots=True)
class RoleSelection:
    sop_class_uid: str
    scu_role: int
    scp_role: int


@dataclass(frozen=True, slots=True)
class UserInformation:
    max_length: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    roles: tuple[RoleSelection, ...] = ()
    # User identity AC (0x59): the server's response bytes; present only if it authenticated us.
    user_identity_response: bytes | None = None
    # Sub-items we do not interpret, kept as (type, value) so nothing is lost in a round trip.
    other: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class AAssociateRQ:
    called_ae: str
    calling_ae: str
    contexts: tuple[PresentationContextRQ, ...]
    user_info: UserInformation = field(default_factory=UserInformation)
    application_context: str = APPLICATION_CONTEXT
    protocol_version: int = 1
    pdu_type = A_ASSOCIATE_RQ


@dataclass(frozen=True, slots=True)
class AAssociateAC:
    # The AE fields echo the request but PS3.8 9.3.3 says they shall not be tested.
    called_ae: str
    calling_ae: str
    contexts: tuple[PresentationContextAC, ...]
    user_info: UserInformation = field(default_factory=UserInformation)
    application_context: str = APPLICATION_CONTEXT
    protocol_version: int = 1
    pdu_type = A_ASSOCIATE_AC


@dataclass(frozen=True, slots=True)
class AAssociateRJ:
    result: int
    source: int
    reason: int
    pdu_type = A_ASSOCIATE_RJ


@dataclass(frozen=True, slots=True)
class PDV:
    """A presentation data value item (PS3.8 9.3.5.1, Annex E.2)."""

    context_id: int
    is_command: bool
    is_last: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class PDataTF:
    pdvs: tuple[PDV, ...]
    pdu_type = P_DATA_TF


@dataclass(frozen=True, slots=True)
class AReleaseRQ:
    pdu_type = A_RELEASE_RQ


@dataclass(frozen=True, slots=True)
class AReleaseRP:
    pdu_type = A_RELEASE_RP


@dataclass(frozen=True, slots=True)
class AAbort:
    """Source 0 service-user, 2 service-provider (PS3.8 9.3.8)."""

    source: int = 0
    reason: int = 0
    pdu_type = A_ABORT


PDU = Union[AAssociateRQ, AAssociateAC, AAssociateRJ, PDataTF, AReleaseRQ, AReleaseRP, AAbort]


# ---------------------------------------------------------------- encoding

# PS3.5 6.2, VR AE: the Default Character Repertoire (G0: space to tilde) without backslash
# (5CH) and without control characters; at most 16 characters; not only spaces.
_AE_CHARACTERS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"\\"}


def ae_title_problem(title: str) -> str | None:
    """Why `title` is not a valid AE title (PS3.5 6.2), or None when it is."""
    if not title.strip(" "):
        return "empty or only spaces"
    if len(title) > 16:
        return f"{len(title)} characters, at most 16"
    bad = sorted(set(title) - _AE_CHARACTERS)
    if bad:
        shown = ", ".join(repr(c) for c in bad[:4])
        return f"{shown} not allowed (printable ASCII only, no backslash, no control characters)"
    return None


def _ae(title: str) -> bytes:
    # Our AE titles go on the wire as given: one with a control character or a backslash would
    # be sent to every server scanned, so it is refused here, in the one encoder, before any send.
    problem = ae_title_problem(title)
    if problem is not None:
        raise LocalProtocolError(f"invalid AE title {title!r}: {problem}")
    return title.encode("ascii").ljust(16, b" ")


def _uid(uid: str) -> bytes:
    # UIDs in items are not padded (PS3.8 9.3.2.1); we send them bare.
    return uid.encode("ascii")


def _item(writer: Writer, item_type: int, value: bytes) -> None:
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"item 0x{item_type:02x} too long: {len(value)} bytes")
    writer.u8(item_type).u8(0).u16(len(value)).raw(value)


def _user_info(info: UserInformation) -> bytes:
    w = Writer()
    if info.max_length is not None:
        w.u8(SUB_MAX_LENGTH).u8(0).u16(4).u32(info.max_length)
    if info.implementation_class_uid is not None:
        _item(w, SUB_IMPLEMENTATION_CLASS_UID, _uid(info.implementation_class_uid))
    for role in info.roles:
        uid = _uid(role.sop_class_uid)
        body = Writer().u16(len(uid)).raw(uid).u8(role.scu_role).u8(role.scp_role).getvalue()
        _item(w, SUB_ROLE_SELECTION, body)
    if info.implementation_version_name is not None:
        _item(w, SUB_IMPLEMENTATION_VERSION_NAME, info.implementation_version_name.encode("ascii"))
    if info.user_identity_response is not None:
        body = Writer().u16(len(info.user_identity_response)).raw(info.user_identity_response).getvalue()
        _item(w, SUB_USER_IDENTITY_AC, body)
    for sub_type, value in info.other:
        _item(w, sub_type, value)
    return w.getvalue()


def _associate(pdu: AAssociateRQ | AAssociateAC) -> bytes:
    w = Writer()
    w.u16(pdu.protocol_version).u16(0).raw(_ae(pdu.called_ae)).raw(_ae(pdu.calling_ae)).raw(bytes(32))
    _item(w, ITEM_APPLICATION_CONTEXT, _uid(pdu.application_context))
    for ctx in pdu.contexts:
        if not (1 <= ctx.id <= 255 and ctx.id % 2 == 1):
            raise LocalProtocolError(f"presentation context ID must be odd, 1-255: {ctx.id}")
        sub = Writer()
        if isinstance(ctx, PresentationContextRQ):
            sub.u8(ctx.id).u8(0).u8(0).u8(0)
            _item(sub, ITEM_ABSTRACT_SYNTAX, _uid(ctx.abstract_syntax))
            for ts in ctx.transfer_syntaxes:
                _item(sub, ITEM_TRANSFER_SYNTAX, _uid(ts))
            _item(w, ITEM_PRESENTATION_CONTEXT_RQ, sub.getvalue())
        else:
            sub.u8(ctx.id).u8(0).u8(ctx.result).u8(0)
            # PS3.8 9.3.3.2: the transfer syntax sub-item is present but not significant on rejection.
            _item(sub, ITEM_TRANSFER_SYNTAX, _uid(ctx.transfer_syntax or ""))
            _item(w, ITEM_PRESENTATION_CONTEXT_AC, sub.getvalue())
    _item(w, ITEM_USER_INFORMATION, _user_info(pdu.user_info))
    return w.getvalue()


def _pdata(pdu: PDataTF) -> bytes:
    w = Writer()
    for pdv in pdu.pdvs:
        header = (0x01 if pdv.is_command else 0) | (0x02 if pdv.is_last else 0)
        w.u32(len(pdv.data) + 2).u8(pdv.context_id).u8(header).raw(pdv.data)
    return w.getvalue()


def encode_pdu(pdu: PDU) -> bytes:
    if isinstance(pdu, (AAssociateRQ, AAssociateAC)):
        body = _associate(pdu)
    elif isinstance(pdu, PDataTF):
        body = _pdata(pdu)
    elif isinstance(pdu, AAssociateRJ):
        body = bytes((0, pdu.result, pdu.source, pdu.reason))
    elif isinstance(pdu, (AReleaseRQ, AReleaseRP)):
        body = bytes(4)
    elif isinstance(pdu, AAbort):
        body = bytes((0, 0, pdu.source, pdu.reason))
    else:
        raise LocalProtocolError(f"not a PDU: {pdu!r}")
    return Writer().u8(pdu.pdu_type).u8(0).u32(len(body)).raw(body).getvalue()


# ---------------------------------------------------------------- decoding

# Decoding is a pure function of the bytes and its results are frozen, so what many peers send
# alike is decoded once. Each cache is bounded: when full it is emptied, never grown.
_CACHE_MAX = 1024
_TEXTS: dict[bytes, str] = {}
_ACCEPTS: dict[bytes, "AAssociateAC"] = {}


def remember(cache: dict[Any, Any], key: object, value: object) -> None:
    """Put into one of the codec's decode caches (here and in dimse.py): emptied when full."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def _text(raw: bytes) -> str:
    # Peers pad UIDs with NUL and AE titles with spaces; either may be present (docs/dicom-reference.md §1.3).
    # Non-ASCII bytes are replaced, never raised on: the value is a fact to report, not to trust.
    # The same few UIDs arrive from every peer: they are decoded once (a bounded cache).
    text = _TEXTS.get(raw)
    if text is None:
        text = raw.decode("ascii", "replace").strip("\x00 ")
        remember(_TEXTS, raw, text)
    return text


def _spans(data: bytes, pos: int, end: int, what: str) -> list[tuple[int, int, int]]:
    """(item type, value start, value end) for each item from `pos` up to `end`.

    Plain indexing and a list rather than Readers and a generator: this runs for every item of
    every A-ASSOCIATE-AC and was the scanner's hottest Python code. The checks are the same: a
    header must fit, and a value must fit in its parent.
    """
    spans: list[tuple[int, int, int]] = []
    while pos < end:
        if len(spans) >= MAX_ITEMS:
            raise PeerProtocolError(f"{what}: more than {MAX_ITEMS} items", abort_reason=6)
        if end - pos < 4:
            raise PeerProtocolError(f"{what}: truncated item header ({end - pos} bytes left)", abort_reason=6)
        start = pos + 4
        pos = start + ((data[pos + 2] << 8) | data[pos + 3])
        if pos > end:
            raise PeerProtocolError(
                f"{what} item 0x{data[start - 4]:02x} value: need {pos - start} bytes, {end - start} left",
                abort_reason=6)
        spans.append((data[start - 4], start, pos))
    return spans


def _decode_user_info(data: bytes, pos: int, end: int) -> UserInformation:
    values: dict[str, Any] = {}
    roles = []
    other = []
    for sub_type, start, stop in _spans(data, pos, end, "user information"):
        if sub_type == SUB_MAX_LENGTH:
            if stop - start != 4:
                raise PeerProtocolError("maximum length sub-item must be 4 bytes", abort_reason=6)
            values["max_length"] = int.from_bytes(data[start:stop], "big")
        elif sub_type == SUB_IMPLEMENTATION_CLASS_UID:
            values["implementation_class_uid"] = _text(data[start:stop])
        elif sub_type == SUB_IMPLEMENTATION_VERSION_NAME:
            values["implementation_version_name"] = _text(data[start:stop])
        elif sub_type == SUB_ROLE_SELECTION:
            sub = Reader(data, start, stop)
            uid = _text(sub.take(sub.u16("role uid length"), "role uid"))
            roles.append(RoleSelection(uid, sub.u8("scu role"), sub.u8("scp role")))
        elif sub_type == SUB_USER_IDENTITY_AC:
            sub = Reader(data, start, stop)
            length = sub.u16("user identity response length")
            values["user_identity_response"] = sub.take(length, "user identity response")
        else:
            other.append((sub_type, bytes(data[start:stop])))
    return UserInformation(roles=tuple(roles), other=tuple(other), **values)


def _decode_associate(pdu_type: int, data: bytes, pos: int, end: int) -> AAssociateRQ | AAssociateAC:
    if end - pos < 68:
        raise PeerProtocolError(f"A-ASSOCIATE body of {end - pos} bytes, below 68", abort_reason=6)
    protocol_version = (data[pos] << 8) | data[pos + 1]
    called = _text(data[pos + 4 : pos + 20])
    calling = _text(data[pos + 20 : pos + 36])
    application_context = None
    contexts: list[Any] = []
    user_info = UserInformation()
    for item_type, start, stop in _spans(data, pos + 68, end, "A-ASSOCIATE"):
        if item_type == ITEM_PRESENTATION_CONTEXT_AC and pdu_type == A_ASSOCIATE_AC:
            contexts.append(_decode_context_ac(data, start, stop))
        elif item_type == ITEM_PRESENTATION_CONTEXT_RQ and pdu_type == A_ASSOCIATE_RQ:
            contexts.append(_decode_context_rq(data, start, stop))
        elif item_type == ITEM_APPLICATION_CONTEXT:
            application_context = _text(data[start:stop])
        elif item_type == ITEM_USER_INFORMATION:
            user_info = _decode_user_info(data, start, stop)
        # Unknown item types are skipped by their length (docs/dicom-reference.md §7.5).
    if application_context is None:
        raise PeerProtocolError("A-ASSOCIATE without an application context item", abort_reason=6)
    cls = AAssociateRQ if pdu_type == A_ASSOCIATE_RQ else AAssociateAC
    return cls(called, calling, tuple(contexts), user_info, application_context, protocol_version)


def _decode_context_rq(data: bytes, pos: int, end: int) -> PresentationContextRQ:
    if end - pos < 4:
        raise PeerProtocolError("presentation context item shorter than 4 bytes", abort_reason=6)
    abstract = None
    transfers = []
    for sub_type, start, stop in _spans(data, pos + 4, end, "presentation context"):
        if sub_type == ITEM_ABSTRACT_SYNTAX:
            abstract = _text(data[start:stop])
        elif sub_type == ITEM_TRANSFER_SYNTAX:
            transfers.append(_text(data[start:stop]))
    if abstract is None or not transfers:
        raise PeerProtocolError("presentation context without abstract or transfer syntax", abort_reason=6)
    return PresentationContextRQ(data[pos], abstract, tuple(transfers))


def _decode_context_ac(data: bytes, pos: int, end: int) -> PresentationContextAC:
    if end - pos < 4:
        raise PeerProtocolError("presentation context item shorter than 4 bytes", abort_reason=6)
    context_id, result = data[pos], data[pos + 2]  # id, reserved, result, reserved
    transfer = None
    for sub_type, start, stop in _spans(data, pos + 4, end, "presentation context"):
        if sub_type == ITEM_TRANSFER_SYNTAX:
            transfer = _text(data[start:stop]) or None
    return PresentationContextAC(context_id, result, transfer)


def _decode_pdata(data: bytes, pos: int, end: int) -> PDataTF:
    pdvs: list[PDV] = []
    while pos < end:
        if len(pdvs) >= MAX_ITEMS:
            raise PeerProtocolError("P-DATA-TF with too many PDV items", abort_reason=6)
        if end - pos < 4:
            raise PeerProtocolError(f"PDV length: need 4 bytes, {end - pos} left", abort_reason=6)
        length = int.from_bytes(data[pos : pos + 4], "big")
        if length < 2:
            raise PeerProtocolError(f"PDV length {length} below 2", abort_reason=6)
        start = pos + 4
        pos = start + length
        if pos > end:
            raise PeerProtocolError(f"PDV: need {length} bytes, {end - start} left", abort_reason=6)
        header = data[start + 1]
        pdvs.append(PDV(data[start], bool(header & 0x01), bool(header & 0x02), data[start + 2 : pos]))
    if not pdvs:
        raise PeerProtocolError("P-DATA-TF without PDV items", abort_reason=6)
    return PDataTF(tuple(pdvs))


def decode_pdu(data: bytes) -> PDU:
    """Decode one complete PDU, header included. Raises PeerProtocolError on any violation."""
    data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise PeerProtocolError(f"PDU header: need {HEADER_LENGTH} bytes, {len(data)} left", abort_reason=6)
    pdu_type = data[0]
    length = int.from_bytes(data[2:6], "big")
    check_length(pdu_type, length, cap=None)
    end = HEADER_LENGTH + length
    if end > len(data):
        raise PeerProtocolError(f"PDU body: need {length} bytes, {len(data) - HEADER_LENGTH} left", abort_reason=6)
    if end < len(data):
        raise PeerProtocolError("bytes after the PDU", abort_reason=6)
    return _decode_body(pdu_type, data, end)


def _decode_body(pdu_type: int, data: bytes, end: int) -> PDU:
    """Decode a PDU whose header was checked (type, length against the bytes): `data` is the
    whole PDU, `end` its length."""
    if pdu_type == P_DATA_TF:
        return _decode_pdata(data, HEADER_LENGTH, end)
    if pdu_type == A_ASSOCIATE_AC:
        # Servers of one product answer one scan's request with the same bytes: decode them once.
        ac = _ACCEPTS.get(data)
        if ac is None:
            # an A-ASSOCIATE-AC's type byte decodes to an AAssociateAC
            ac = cast(AAssociateAC, _decode_associate(pdu_type, data, HEADER_LENGTH, end))
            remember(_ACCEPTS, data, ac)
        return ac
    if pdu_type == A_ASSOCIATE_RQ:
        return _decode_associate(pdu_type, data, HEADER_LENGTH, end)
    if pdu_type == A_ASSOCIATE_RJ:
        return AAssociateRJ(data[7], data[8], data[9])
    if pdu_type == A_RELEASE_RQ:
        return AReleaseRQ()
    if pdu_type == A_RELEASE_RP:
        return AReleaseRP()
    return AAbort(data[8], data[9])


def check_length(pdu_type: int, length: int, cap: int | None) -> None:
    """Refuse a PDU header before its body is read: unknown type, or a length out of bounds."""
    if not A_ASSOCIATE_RQ <= pdu_type <= A_ABORT:
        raise PeerProtocolError(f"unrecognized PDU type 0x{pdu_type:02x}", abort_reason=1)
    fixed = FIXED_LENGTH.get(pdu_type)
    if fixed is not None and length != fixed:
        raise PeerProtocolError(f"PDU 0x{pdu_type:02x} must have length {fixed}, not {length}", abort_reason=6)
    if pdu_type in (A_ASSOCIATE_RQ, A_ASSOCIATE_AC) and not 68 <= length <= MAX_ASSOCIATE_LENGTH:
        raise PeerProtocolError(f"A-ASSOCIATE length {length} outside 68-{MAX_ASSOCIATE_LENGTH}", abort_reason=6)
    if pdu_type == P_DATA_TF and (length < 6 or (cap is not None and length > cap)):
        raise PeerProtocolError(f"P-DATA-TF length {length} outside 6-{cap}", abort_reason=6)


def sniff(first: bytes) -> str:
    """Name what a peer that is not speaking DICOM seems to speak, from its first bytes."""
    if first[:1] in (b"\x15", b"\x16") and first[1:2] in (b"", b"\x03"):
        return "looks like TLS"
    # A response ("HTTP/1.1 400"), a page, or a request ("GET "): fo-dicom #1678 read the last as
    # a header with a gigantic length.
    if first[:4] in (b"HTTP", b"GET ", b"POST", b"HEAD", b"PUT ", b"<!DO", b"<htm", b"<HTM"):
        return "looks like HTTP"
    if first[:4] == b"SSH-":
        return "looks like SSH"
    if first[:3] in (b"220", b"+OK", b"* O"):
        return "looks like a text protocol banner"
    return "not DICOM"


class PduFramer:
    """Cuts a byte stream into PDUs. Holds at most one PDU's worth of bytes.

    `max_pdu_length` caps P-DATA-TF bodies; A-ASSOCIATE PDUs are capped at 64 KiB and the
    fixed-size PDUs at exactly 4. The cap is checked from the header alone.
    """

    def __init__(self, max_pdu_length: int) -> None:
        self.max_pdu_length = max_pdu_length
        self._buffer = bytearray()
        self._need: int | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[PDU]:
        """Add bytes and return every complete PDU. The first bad one raises, and the PDUs before
        it in the same call go with the exception: a caller that must act on each PDU before the
        next is examined (an A-ABORT followed by junk) uses push() and next_pdu()."""
        self.push(data)
        pdus = []
        while (pdu := self.next_pdu()) is not None:
            pdus.append(pdu)
        return pdus

    def push(self, data: bytes) -> None:
        self._buffer += data

    def next_type(self) -> int | None:
        """The type byte of the PDU being assembled, as soon as it has arrived."""
        return self._buffer[0] if self._buffer else None

    def clear(self) -> None:
        """Forget buffered bytes (after a protocol error nothing more is read)."""
        self._buffer = bytearray()
        self._need = None

    def next_pdu(self) -> PDU | None:
        """The next complete PDU, or None until more bytes arrive. Raises PeerProtocolError."""
        if self._need is None:
            # The type byte is judged as soon as it arrives: a peer that sends a few bytes of
            # something else and then stalls is not DICOM, and must not end as a mere timeout.
            if self._buffer and not A_ASSOCIATE_RQ <= self._buffer[0] <= A_ABORT:
                raise PeerProtocolError(f"not a DICOM PDU ({sniff(bytes(self._buffer[:8]))})", abort_reason=1)
            if len(self._buffer) < HEADER_LENGTH:
                return None
            pdu_type = self._buffer[0]
            length = int.from_bytes(self._buffer[2:6], "big")
            check_length(pdu_type, length, self.max_pdu_length)
            self._need = HEADER_LENGTH + length
        if len(self._buffer) < self._need:
            return None
        # Its header was checked above (check_length): the body is decoded without a second look.
        need = self._need
        if len(self._buffer) == need:
            pdu = _decode_body(self._buffer[0], bytes(self._buffer), need)  # the usual case: one PDU
            self._buffer.clear()
        else:
            with memoryview(self._buffer) as view:
                pdu = _decode_body(view[0], bytes(view[:need]), need)  # one copy, not two
            del self._buffer[:need]
        self._need = None
        return pdu
