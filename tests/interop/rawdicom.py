"""A minimal, independent A-ASSOCIATE requestor over a blocking socket (PS3.8 9.3.2-9.3.4).

Used to pin down what the real servers answer, byte for byte, without pacswatch's own codec
(which is what the probe tests check) and without pynetdicom's client, which sometimes reports a
DCMTK A-ASSOCIATE-RJ that is followed at once by a close as an abort (seen with dcmqrscp).
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass, field

from loopback import require_loopback

APP_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
VERIFICATION = "1.2.840.10008.1.1"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
RANDOM_SYNTAX = "2.25.304912773140119462093212380551930871117"  # the promiscuity control
IMPL_UID = "2.25.204395695027342872693609202859394366001"


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(value)) + value


def associate_rq(called: str, calling: str, contexts: tuple[str, ...]) -> bytes:
    body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode() + bytes(32)
    body += _item(0x10, APP_CONTEXT.encode())
    for i, syntax in enumerate(contexts):
        pc = bytes([2 * i + 1, 0, 0, 0]) + _item(0x30, syntax.encode()) + _item(0x40, IMPLICIT_LE.encode())
        body += _item(0x20, pc)
    user = _item(0x51, struct.pack(">I", 16384)) + _item(0x52, IMPL_UID.encode()) + _item(0x55, b"PW_INTEROP_RAW")
    body += _item(0x50, user)
    return struct.pack(">BBI", 1, 0, len(body)) + body


@dataclass
class Answer:
    kind: str  # "ac", "rj", "abort", "closed", "tls-alert", "reset", or "other:<type>"
    reject: tuple[int, int, int] | None = None  # (result, source, reason)
    contexts: dict[str, int] = field(default_factory=dict)  # abstract syntax → result
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    error: str | None = None

    def accepted(self, syntax: str) -> bool:
        return self.contexts.get(syntax) == 0


def _parse_ac(pdu: bytes, contexts: tuple[str, ...]) -> Answer:
    ans = Answer("ac")
    i = 74
    while i + 4 <= len(pdu):
        kind, length = pdu[i], struct.unpack(">H", pdu[i + 2 : i + 4])[0]
        value = pdu[i + 4 : i + 4 + length]
        if kind == 0x21 and len(value) >= 4:
            pc_id, result = value[0], value[2]
            if pc_id % 2 == 1 and (pc_id - 1) // 2 < len(contexts):
                ans.contexts[contexts[(pc_id - 1) // 2]] = result
        elif kind == 0x50:
            j = 0
            while j + 4 <= len(value):
                sub, sublen = value[j], struct.unpack(">H", value[j + 2 : j + 4])[0]
                subval = value[j + 4 : j + 4 + sublen].rstrip(b"\0").decode("ascii", "replace")
                if sub == 0x52:
                    ans.implementation_class_uid = subval
                elif sub == 0x55:
                    ans.implementation_version_name = subval
                j += 4 + sublen
        i += 4 + length
    return ans


def associate(
    ip: str,
    port: int,
    called: str,
    calling: str = "PWINTEROP",
    contexts: tuple[str, ...] = (VERIFICATION,),
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> Answer:
    """Send one A-ASSOCIATE-RQ, read the answer, release (or just close), and describe it."""
    require_loopback(ip)
    sock = socket.create_connection((ip, port), timeout=timeout)
    try:
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock)
        try:
            sock.sendall(associate_rq(called, calling, contexts))
        except ssl.SSLError as exc:
            return Answer("tls-alert", error=str(exc))
        except (ConnectionResetError, BrokenPipeError) as exc:
            return Answer("reset", error=str(exc))
        data = b""
        try:
            while len(data) < 6 or len(data) < 6 + struct.unpack(">I", data[2:6])[0]:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > 1 << 20:
                    break
        except ssl.SSLError as exc:
            return Answer("tls-alert", error=str(exc))
        except ConnectionResetError as exc:
            return Answer("reset", error=str(exc))
        if len(data) < 6:
            return Answer("closed")
        kind = data[0]
        if kind == 0x03 and len(data) >= 10:
            return Answer("rj", reject=(data[7], data[8], data[9]))
        if kind == 0x07:
            return Answer("abort")
        if kind != 0x02:
            return Answer(f"other:{kind:#04x}")
        ans = _parse_ac(data, contexts)
        try:  # A-RELEASE-RQ; the RP (or a close) ends it
            sock.sendall(bytes.fromhex("05000000000400000000"))
            sock.recv(16)
        except OSError:
            pass
        return ans
    finally:
        sock.close()
