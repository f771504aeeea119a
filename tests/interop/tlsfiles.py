"""Certificates for the DICOM TLS servers.

The server certificate is self-signed (as on most exposed servers; the probe should report it so),
made with `cryptography`. Client certificates come from a trustme CA, which the server trusts
(`DicomTlsTrustedCertificates`), so a test can also complete a mutual-TLS association.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SERVER_CN = "pacswatch-interop-dicom-tls"


@dataclass(frozen=True)
class TlsMaterial:
    server_cert: Path  # self-signed
    server_key: Path
    client_ca: Path  # the CA the server trusts for client certificates
    client_cert_chain: Path
    client_key: Path

    def client_context(self, *, with_client_cert: bool = True) -> ssl.SSLContext:
        """A client context that trusts the self-signed server certificate (no name check)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cafile=str(self.server_cert))
        if with_client_cert:
            ctx.load_cert_chain(str(self.client_cert_chain), str(self.client_key))
        return ctx


def make_tls_material(directory: Path, ip: str) -> TlsMaterial:
    directory.mkdir(parents=True, exist_ok=True)
    # RSA: DCMTK's default TLS 1.2 profile (BCP 195) offers only ECDHE_RSA suites, so an EC key
    # leaves TLS 1.2 clients with "no shared cipher" (found by experiment; TLS 1.3 works either way).
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, SERVER_CN),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pacswatch interop tests"),
        ]
    )
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    server_cert = directory / "server.crt"
    server_key = directory / "server.key"
    server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )

    ca = trustme.CA(organization_name="pacswatch interop client CA")
    client = ca.issue_cert("pacswatch-interop-client")
    client_ca = directory / "client-ca.crt"
    ca.cert_pem.write_to_path(str(client_ca))
    chain = directory / "client.crt"
    chain.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    client_key = directory / "client.key"
    client.private_key_pem.write_to_path(str(client_key))
    return TlsMaterial(server_cert, server_key, client_ca, chain, client_key)
