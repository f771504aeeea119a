"""Throw-away certificates for the lab's TLS servers, made with `cryptography` at start-up.

The server certificate is self-signed on purpose (a scanner should report it as such). Client
certificates come from a separate lab client CA that the `tls-client-cert` server trusts, so a
test can prove the server lets a holder in. Files live in a private temporary directory that
`LabCertificates.cleanup()` removes; nothing is written anywhere else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pacswatch lab (synthetic)"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _cert(subject: x509.Name, key, issuer: x509.Name, issuer_key, *, ca: bool, usage, sans=()):
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class LabCertificates:
    directory: Path
    server_cert: Path  # self-signed, SANs: the TLS endpoints' IPs and "localhost"
    server_key: Path
    client_ca: Path  # the CA that `tls-client-cert` trusts
    client_cert: Path  # signed by client_ca: lets a test through `tls-client-cert`
    client_key: Path

    def server_context(self, *, require_client_cert: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(self.client_ca))
        return ctx

    def client_context(self, *, with_client_cert: bool) -> ssl.SSLContext:
        """For tests: trusts the lab's server certificate, optionally presents the client one."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cafile=str(self.server_cert))
        if with_client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx

    def cleanup(self) -> None:
        for path in (self.server_cert, self.server_key, self.client_ca, self.client_cert, self.client_key):
            path.unlink(missing_ok=True)
        try:
            self.directory.rmdir()
        except OSError:
            pass


def make_certificates(ips: list[str], server_name: str = "pacswatch-lab-server") -> LabCertificates:
    """`server_name` is the server certificate's common name (a test may make it hostile)."""
    directory = Path(tempfile.mkdtemp(prefix="pacswatch-lab-"))
    os.chmod(directory, 0o700)
    server_key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(server_name)
    sans = [x509.DNSName("localhost")] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    server = _cert(subject, server_key, subject, server_key, ca=False,
                   usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("pacswatch-lab-client-ca")
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True, usage=None)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert(_name("pacswatch-lab-client"), client_key, ca_name, ca_key, ca=False,
                   usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {
        "server.pem": _pem_cert(server), "server.key": _pem_key(server_key),
        "client-ca.pem": _pem_cert(ca), "client.pem": _pem_cert(client), "client.key": _pem_key(client_key),
    }
    for name, data in files.items():
        path = directory / name
        path.write_bytes(data)
        os.chmod(path, 0o600)
    return LabCertificates(
        directory, directory / "server.pem", directory / "server.key", directory / "client-ca.pem",
        directory / "client.pem", directory / "client.key",
    )
