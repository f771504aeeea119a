"""TLS facts from a finished handshake, shared by the web probe and DICOM over TLS.

The scanner never verifies certificates (it must see every server, however configured), so the
certificate is read in binary form: `getpeercert()` returns an empty dict when verification is
off (reference section 6).
"""

from __future__ import annotations

import ssl
from datetime import datetime, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from pacswatch.record import TlsFacts

# Subject and issuer strings come from the peer: keep them short enough for a report line.
_NAME_CAP = 256


def scanner_ssl_context() -> ssl.SSLContext:
    """A client context that completes handshakes with old and badly configured servers.

    No verification: we measure the certificate, we do not trust it. SECLEVEL=0 and TLS 1.0 as
    the floor let OpenSSL 3 talk to the retired configurations we are here to report.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):  # a build without the old protocols: keep its defaults
        pass
    return context


def tls_facts_from_ssl_object(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None, now: datetime | None = None
) -> TlsFacts:
    """Version, cipher and certificate facts of an established TLS session."""
    if ssl_object is None:
        return TlsFacts(handshake=False, error="no TLS session")
    cipher = ssl_object.cipher()
    der = ssl_object.getpeercert(binary_form=True)
    return tls_facts_from_der(
        der, version=ssl_object.version(), cipher=cipher[0] if cipher else None, now=now
    )


def tls_facts_from_der(
    der: bytes | None, *, version: str | None, cipher: str | None, now: datetime | None = None
) -> TlsFacts:
    """TlsFacts from a DER certificate; a certificate we cannot parse is a fact, not a crash."""
    facts = TlsFacts(handshake=True, version=version, cipher=cipher)
    if not der:
        facts.error = "no server certificate"
        return facts
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        facts.error = f"unparseable certificate: {exc}"[:200]
        return facts
    now = now or datetime.now(timezone.utc)
    facts.subject = _name(cert.subject)
    facts.issuer = _name(cert.issuer)
    facts.self_signed = _self_signed(cert)
    facts.not_after = cert.not_valid_after_utc
    facts.expired = now > cert.not_valid_after_utc
    return facts


def _name(name: x509.Name) -> str:
    try:
        text = name.rfc4514_string()
    except ValueError:  # malformed attribute values in a hostile certificate
        text = "<unparseable name>"
    return text[:_NAME_CAP]


def _self_signed(cert: x509.Certificate) -> bool:
    """Issuer equals subject and the certificate's own key verifies its signature."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return False  # a CA that shares the name signed it: not self-signed
    except (ValueError, TypeError):
        return True  # an algorithm we cannot check: the equal names are all we have
    return True
