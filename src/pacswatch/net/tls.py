"""TLS as a scanner sees it: handshake without verification, then facts about what was offered.

We never verify: the point is to describe the server, including expired or self-signed
certificates. The context accepts old protocol versions and ciphers (OpenSSL 3 needs
`@SECLEVEL=0` for TLS 1.0/1.1, docs/dicom-reference.md §6.3) so that weak servers are described, not
missed. Whether the server asked for a client certificate is learnt from the handshake itself
(a CertificateRequest message), with the alerts of docs/dicom-reference.md §6.2 as a fallback.
"""

from __future__ import annotations

import ssl
import warnings
import weakref
from datetime import datetime, timezone

from typing import TYPE_CHECKING

from pacswatch.record import TlsFacts
from pacswatch.text import clean

if TYPE_CHECKING:
    from cryptography import x509

_HANDSHAKE = 22  # TLS content type
_CERTIFICATE_REQUEST = 13  # handshake message type
# Alerts that mean "you needed a client certificate": TLS 1.3 certificate_required (116),
# TLS 1.2 handshake_failure (40) and bad_certificate (42) as servers send them in practice.
_CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "TLSV13_ALERT_CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE")


class ScannerTlsContext:
    """One SSLContext for a whole scan (building one costs milliseconds) plus the record of
    which connections were asked for a client certificate."""

    def __init__(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with warnings.catch_warnings():
                # Deprecated for clients that trust what they connect to; we only describe servers.
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):  # a build without the old protocols: describe what we can
            pass
        self._asked: weakref.WeakSet[object] = weakref.WeakSet()
        # _msg_callback is CPython's hook for handshake tracing; without it we fall back to alerts.
        if hasattr(ctx, "_msg_callback"):
            ctx._msg_callback = self._on_message
        self.context = ctx

    def _on_message(self, conn: object, direction: str, version: int, content_type: int, msg_type: int,
                    data: bytes) -> None:
        if direction == "read" and content_type == _HANDSHAKE and msg_type == _CERTIFICATE_REQUEST:
            self._asked.add(conn)

    def client_cert_requested(self, ssl_object: ssl.SSLObject | None) -> bool:
        return ssl_object is not None and ssl_object in self._asked


def is_client_cert_error(detail: str) -> bool:
    upper = detail.upper()
    return any(marker in upper for marker in _CLIENT_CERT_ALERTS)


def tls_facts(ssl_object: ssl.SSLObject, *, client_cert_required: bool = False,
              now: datetime | None = None) -> TlsFacts:
    """Describe a completed handshake from its SSLObject."""
    now = now or datetime.now(timezone.utc)
    cipher = ssl_object.cipher()
    facts = TlsFacts(
        handshake=True,
        version=ssl_object.version(),
        cipher=cipher[0] if cipher else None,
        client_cert_required=client_cert_required,
    )
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        describe_certificate(facts, der, now)
    return facts


def describe_certificate(facts: TlsFacts, der: bytes, now: datetime) -> None:
    # Imported here: every scan loads this module, only TLS peers need it (~30 ms at start-up).
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        facts.error = clean(f"unparseable certificate: {exc}")
        return
    # Assigned, so not validated as PeerText: cleaned here, where the peer's names enter.
    facts.subject = clean(cert.subject.rfc4514_string())
    facts.issuer = clean(cert.issuer.rfc4514_string())
    facts.not_after = cert.not_valid_after_utc
    facts.expired = cert.not_valid_after_utc < now
    facts.self_signed = cert.subject == cert.issuer and _signed_by_own_key(cert)


def _signed_by_own_key(cert: x509.Certificate) -> bool:
    """True when the certificate's signature verifies with its own public key."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            # A None hash algorithm raises, caught below: not called self-signed.
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)  # type: ignore[arg-type]
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return True  # subject == issuer and a key type we do not check: call it self-signed
    except Exception:
        return False
    return True
