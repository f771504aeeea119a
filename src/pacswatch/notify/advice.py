"""How to fix it, per product: data, chosen by the products a case's services showed.

Advice is the part of a notice that turns "you have a problem" into a change someone can make
today, so it names the product's own settings. Sources: the Orthanc Book (configuration file
options), DCMTK's dcmqrscp documentation (dcmqrcnf.txt: the AETable and HostTable), and
DICOM PS3.15 Annex B (TLS profiles).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from pacswatch.notify.exposure import Exposure


@dataclass(frozen=True)
class Advice:
    key: str
    title: str
    steps: tuple[str, ...]


ORTHANC = Advice("orthanc", "Orthanc", (
    'Set "DicomAlwaysAllowFind": false, "DicomAlwaysAllowMove": false and "DicomAlwaysAllowStore": false, '
    'and list the modalities that may connect in "DicomModalities" (each with its AE title, address and port).',
    'Set "DicomCheckCalledAet": true, so that a caller must know this server\'s AE title, and '
    '"DicomCheckModalityHost": true, so that a known AE title is accepted only from its own address.',
    'For the REST API and Orthanc Explorer: "AuthenticationEnabled": true with accounts in "RegisteredUsers" '
    '(never the sample accounts), and "RemoteAccessAllowed": false unless a reverse proxy in front needs it.',
    'To encrypt DICOM traffic: "DicomTlsEnabled": true with "DicomTlsCertificate", "DicomTlsPrivateKey" and '
    '"DicomTlsTrustedCertificates" (trusted client certificates), and "SslEnabled": true for HTTP.',
))
DCMTK = Advice("dcmtk", "DCMTK (dcmqrscp, storescp)", (
    "In dcmqrscp.cfg, restrict each storage area in the AETable to the peers that need it (its last column: "
    "a list of peer AE titles or a HostTable entry, not ANY), and define those peers in the HostTable with "
    "their addresses.",
    "Run dcmqrscp and storescp as an unprivileged user, listening only on the internal interface the "
    "modalities use.",
    "Use the TLS options (+tls with a certificate and key, --require-peer-cert with the trusted peers' "
    "certificates) so that only peers with certificates can connect.",
))
DCM4CHEE = Advice("dcm4chee", "dcm4chee", (
    "Secure the archive's web UI and DICOMweb services with the Keycloak-based authentication of the secured "
    "image (dcm4chee-arc-psql-secure) rather than the unsecured one.",
    "Restrict the Archive's accepted calling AE titles (dcmAcceptedCallingAETitle) and network connections.",
))
GENERIC_DICOM = Advice("dicom", "Any DICOM archive", (
    "Do not expose the DICOM port (104, 11112 or other) to the internet: allow only the addresses of the "
    "modalities and sites that need it, on the firewall in front of the server, or use a VPN.",
    "Configure the archive to accept associations only from known AE titles and their addresses, and to "
    "refuse C-FIND, C-MOVE and C-GET from unknown callers.",
    "Where remote sites must connect over the internet, use DICOM TLS (PS3.15 Annex B) with client certificates.",
))
GENERIC_WEB = Advice("web", "Web viewers and APIs", (
    "Put the web interface behind authentication (and a VPN or an allowlist of addresses), "
    "and change any default or sample account's password.",
    "Serve it over HTTPS only.",
))

_BY_PRODUCT = (("orthanc", ORTHANC), ("dcmtk", DCMTK), ("dcmqrscp", DCMTK), ("dcm4chee", DCM4CHEE))


def advice_for(exposures: Iterable[Exposure]) -> list[Advice]:
    """Product advice for the products seen, then the generic advice for the services seen."""
    out: list[Advice] = []
    services: set[str] = set()
    for e in exposures:
        name = (e.product or "").lower()
        for marker, advice in _BY_PRODUCT:
            if marker in name and advice not in out:
                out.append(advice)
        if e.service:
            services.add(e.service)
    if "dicom" in services or not services:
        out.append(GENERIC_DICOM)
    if "http" in services:
        out.append(GENERIC_WEB)
    return out


def verify_steps(exposures: Iterable[Exposure]) -> list[str]:
    """Commands the owner can run from outside their network to check the fix."""
    steps: list[str] = []
    for e in exposures:
        if e.service == "http":
            scheme = "https" if e.tls else "http"
            steps.append(f"curl -si {scheme}://{e.endpoint}/ should time out, be refused, or answer 401/403 "
                         "without showing data.")
        else:
            tls = " +tls ... (with your certificates)" if e.tls else ""
            steps.append(f"echoscu -aec ANY-SCP {e.ip} {e.port}{tls} should fail (connection refused or "
                         "association rejected), and findscu with a wildcard query must return nothing.")
    return list(dict.fromkeys(steps))
