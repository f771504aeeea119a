"""How to fix it, per product: data, chosen by the products a case's services showed.

Advice is the part of a notice that turns "you have a problem" into a change someone can make
today, so it names the product's own settings. Sources: the Orthanc Book (configuration file
options), DCMTK's dcmqrscp documentation (dcmqrcnf.txt: the AETable and HostTable), and
DICOM PS3.15 Annex B (TLS profiles).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pacswatch.fingerprint.web import ORTHANC_DEFAULT_CREDENTIALS
from pacswatch.notify.exposure import Exposure
from pacswatch.output import address_key


@dataclass(frozen=True)
class Advice:
    key: str
    title: str
    steps: tuple[str, ...]


ORTHANC = Advice("orthanc", "Orthanc", (
    ('Set "DicomAlwaysAllowFind": false, "DicomAlwaysAllowMove": false and "DicomAlwaysAllowStore": false, '
    'and list the modalities that may connect in "DicomModalities" (each with its AE title, address and port).'),
    ('Set "DicomCheckCalledAet": true, so that a caller must know this server\'s AE title, and '
    '"DicomCheckModalityHost": true, so that a known AE title is accepted only from its own address.'),
    ('For the REST API and Orthanc Explorer: "AuthenticationEnabled": true with accounts in "RegisteredUsers" '
    '(never the sample accounts), and "RemoteAccessAllowed": false unless a reverse proxy in front needs it.'),
    ('To encrypt DICOM traffic: "DicomTlsEnabled": true with "DicomTlsCertificate", "DicomTlsPrivateKey" and '
    '"DicomTlsTrustedCertificates" (trusted client certificates), and "SslEnabled": true for HTTP.'),
))
DCMTK = Advice("dcmtk", "DCMTK (dcmqrscp, storescp)", (
    ("In dcmqrscp.cfg, restrict each storage area in the AETable to the peers that need it (its last column: "
    "a list of peer AE titles or a HostTable entry, not ANY), and define those peers in the HostTable with "
    "their addresses."),
    ("Run dcmqrscp and storescp as an unprivileged user, listening only on the internal interface the "
    "modalities use."),
    ("Use the TLS options (+tls with a certificate and key, --require-peer-cert with the trusted peers' "
    "certificates) so that only peers with certificates can connect."),
))
DCM4CHEE = Advice("dcm4chee", "dcm4chee", (
    ("Secure the archive's web UI and DICOMweb services with the Keycloak-based authentication of the secured "
    "image (dcm4chee-arc-psql-secure) rather than the unsecured one."),
    "Restrict the Archive's accepted calling AE titles (dcmAcceptedCallingAETitle) and network connections.",
))
GENERIC_DICOM = Advice("dicom", "Any DICOM archive", (
    ("Do not expose the DICOM port (104, 11112 or other) to the internet: allow only the addresses of the "
    "modalities and sites that need it, on the firewall in front of the server, or use a VPN."),
    ("Configure the archive to accept associations only from known AE titles and their addresses, and to "
    "refuse C-FIND, C-MOVE and C-GET from unknown callers."),
    "Where remote sites must connect over the internet, use DICOM TLS (PS3.15 Annex B) with client certificates.",
))
GENERIC_WEB = Advice("web", "Web viewers and APIs", (
    ("Put the web interface behind authentication (and a VPN or an allowlist of addresses), "
    "and change any default or sample account's password."),
    "Serve it over HTTPS only.",
))

TLS_CLIENT_CERT = Advice("tls-client-cert", "DICOM over TLS with client certificates", (
    ("These ports already demand a client certificate before any DICOM is spoken, so an unknown caller "
    "cannot query them. Keep it that way when you change the configuration."),
    ("Trust only the certificates (or the private CA) of the sites that must connect, not a public CA "
    "bundle: any certificate a public CA signed would otherwise be let in."),
    ("Renew the server certificate before it expires, and allow the port on the firewall only for the "
    "addresses of those sites."),
))
PROTECTED = Advice("protected", "Reachable but protected services", (
    ("These refuse unknown callers (an unknown AE title, or no login), so they show no data to us. "
    "They are still reachable from the internet: if only known sites use them, allow only those "
    "addresses on your firewall."),
))

_BY_PRODUCT = (("orthanc", ORTHANC), ("dcmtk", DCMTK), ("dcmqrscp", DCMTK), ("dcm4chee", DCM4CHEE))


def advice_for(exposures: Iterable[Exposure]) -> list[Advice]:
    """Product advice for the products of the exposed services, then the generic advice for the
    services seen, then what fits the protected ones. Advice that is already true is left out:
    a TLS port that demands client certificates is not told to use client certificates."""
    exposures = list(exposures)
    exposed = [e for e in exposures if not e.protected]
    out: list[Advice] = []
    services: set[str] = set()
    for e in exposed:
        name = (e.product or "").lower()
        for marker, advice in _BY_PRODUCT:
            if marker in name and advice not in out:
                out.append(advice)
        if e.service:
            services.add(e.service)
    if "dicom" in services or (exposed and not services):
        out.append(GENERIC_DICOM)
    if "http" in services:
        out.append(GENERIC_WEB)
    protected = [e for e in exposures if e.protected]
    if any(e.client_cert_required for e in protected):
        out.append(TLS_CLIENT_CERT)
    if any(not e.client_cert_required for e in protected):
        out.append(PROTECTED)
    return out


@dataclass(frozen=True)
class Check:
    """One way to verify the fix for a group of endpoints (one product on one port): a command
    that succeeds today and must fail once the service is closed to unknown callers."""

    title: str
    command: str
    today: str
    after: str
    others: tuple[str, ...] = ()  # the group's other endpoints: the same command, another address


_AE_TITLE = re.compile(r"[A-Za-z0-9_.-]{1,16}")  # never let a stored string into a shell command


def _called_ae(e: Exposure) -> str:
    """The called AE title a check uses: the product default the scan needed, else ANY-SCP
    (the server took a random title, so it takes this one too)."""
    return e.called_ae if e.called_ae and _AE_TITLE.fullmatch(e.called_ae) else "ANY-SCP"


def _command(e: Exposure, ip: str) -> tuple[str, str, str]:
    host = f"[{ip}]" if ":" in ip else ip
    if e.service == "http":
        scheme = "https" if e.tls else "http"
        path = "/system" if "orthanc" in (e.product or "").lower() else "/"
        insecure = "k" if e.tls else ""  # their own certificate may be self-signed
        curl = f"curl -s{insecure} -o /dev/null -w '%{{http_code}}\\n' --max-time 10"
        if e.http_auth == "default-credentials":  # a login is asked; the documented one opens it
            user, password = ORTHANC_DEFAULT_CREDENTIALS
            return (f"{curl} -u {user}:{password} {scheme}://{host}:{e.port}{path}",
                    f"it prints 200 (the documented account {user}:{password} is accepted)",
                    ("it must print 401 (the account is removed or its password changed), or 000 (no "
                    "connection from outside your network)"))
        return (f"{curl} {scheme}://{host}:{e.port}{path}",
                "it prints 200 (the page or API answers without a login)",
                "it must print 401 or 403, or 000 (no connection from outside your network)")
    called = _called_ae(e)
    tls = "+tla -ic " if e.tls else ""  # anonymous TLS: what an unknown caller can do
    return (f"echoscu {tls}-aet VERIFY -aec {called} {ip} {e.port}",
            "it succeeds: an unknown caller's association is accepted",
            "it must fail (association rejected, or no connection from outside your network)")


def verify_checks(exposures: Iterable[Exposure]) -> list[Check]:
    """One check per product and port for the exposed services (protected ones are left out:
    a check that already passes proves nothing)."""
    groups: dict[tuple, list[Exposure]] = {}
    for e in exposures:
        if e.protected or not _is_ip(e.ip):
            continue
        # The called AE title and the login are part of the command: a group shares them. The
        # title is the one the command uses, so a server found behind ANY-SCP and one that takes
        # any title (checked with ANY-SCP too) are one group, not two with the same heading.
        called = _called_ae(e) if e.service != "http" else None
        key = (e.product or "", e.service or "dicom", e.port, e.tls, called, e.http_auth)
        groups.setdefault(key, []).append(e)
    checks = []
    for (product, service, port, tls, _called, _auth), items in groups.items():
        items = sorted(items, key=lambda e: address_key(e.ip, e.port))  # 127.0.0.9 before 127.0.0.10
        first = items[0]
        label = "web" if service == "http" else "DICOM"
        title = f"{product or 'Unknown product'}, {label}{' over TLS' if tls else ''} on port {port}"
        command, today, after = _command(first, first.ip)
        checks.append(Check(title, command, today, after, tuple(e.ip for e in items[1:])))
    return checks


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
