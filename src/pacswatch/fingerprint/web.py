"""Web fingerprints: tables (data) of HTTP markers → product, and the small parsers around them.

Every marker here was confirmed in the product's own source (docs/dicom-reference.md §5 and the files
named in `source`); products whose markers could not be confirmed (MedDream, PostDICOM) are left
out rather than guessed. Matchers are pure: text in, facts out, no I/O, and they never keep
anything from a response except the product facts they return.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from pacswatch.record import Product
from pacswatch.text import version_or_none

TITLE_CAP = 120  # a page title is reported, so keep it short


@dataclass(frozen=True)
class PageMarker:
    """An HTML page that names a product. All given conditions must hold."""

    product: str
    component: str  # the part of the product this page is (a UI, a viewer, a CGI)
    title: str | None = None  # regex searched in the page <title>
    body: tuple[str, ...] = ()  # substrings that must all be in the body
    version: str | None = None  # regex on title + body; group 1 is the version
    # The page is served by the data-bearing program itself (Conquest's dgate CGI), so
    # answering it without credentials means the data queries answer too.
    data_bearing: bool = False
    login_form: bool = False  # the page is the product's login form: credentials are required
    source: str = ""


PAGE_MARKERS: tuple[PageMarker, ...] = (
    PageMarker("Orthanc", "Orthanc Explorer 2", title=r"^Orthanc Explorer 2$",
               source="orthanc-explorer-2 WebApplication/index.html"),
    PageMarker("Orthanc", "Orthanc Explorer", title=r"^Orthanc Explorer$",
               source="Orthanc OrthancExplorer/explorer.html (served at /app/explorer.html)"),
    PageMarker("Orthanc", "Orthanc DICOMweb client", title=r"^Orthanc - DICOMweb client$",
               source="orthanc-dicomweb WebApplication/index.html"),
    PageMarker("dcm4chee-arc", "dcm4chee-arc UI", title=r"^dcm4chee-arc-ui$",
               source="dcm4chee-arc-light dcm4chee-arc-ui2/src/index.html"),
    PageMarker("OHIF Viewer", "OHIF Viewer", title=r"OHIF Viewer",
               source="OHIF Viewers platform/app index.html"),
    PageMarker("Conquest", "Conquest web (dgate)", title=r"Conquest DICOM server - version",
               version=r"Conquest DICOM server - version\s*([0-9][0-9A-Za-z.]*)", data_bearing=True,
               source="Conquest-DICOM-Server src/dgate/src/dgate.cpp (mode=top)"),
    PageMarker("Horos/OsiriX", "Horos/OsiriX Web Portal", body=("iPhoneStyle.css", "styleswitcher.js"),
               login_form=True, source="horos Binaries/WebServicesHTML/English/head.pvt.html"),
    PageMarker("Dicoogle", "Dicoogle web", title=r"Dicoogle",
               source="dicoogle WEB-INF/index.jsp"),
)

# Orthanc's /system (OrthancRestSystem.cpp GetSystemInformation): match keys, not Name.
ORTHANC_SYSTEM_KEYS = frozenset({"ApiVersion", "DicomAet", "DicomPort", "HttpPort", "DatabaseVersion",
                                 "PluginsEnabled", "IsHttpServerSecure"})
ORTHANC_REALM = "Orthanc Secure Area"
ORTHANC_DEFAULT_CREDENTIALS = ("orthanc", "orthanc")  # since 1.5.8, remote access on and no users
ORTHANC_COUNT_KEYS = {"patients": "CountPatients", "studies": "CountStudies", "series": "CountSeries",
                      "instances": "CountInstances"}

DCM4CHEE_UI = "/dcm4chee-arc/ui2/"
DCM4CHEE_AETS = "/dcm4chee-arc/aets"
DCM4CHEE_DEFAULT_AE = "DCM4CHEE"
CONQUEST_TOP = "/cgi-bin/dgate?mode=top"

# DICOMweb roots tried on any web server: Orthanc's plugin and dcm4chee-arc's default AE.
DICOMWEB_ROOTS = ("/dicom-web", f"/dcm4chee-arc/aets/{DCM4CHEE_DEFAULT_AE}/rs")

# Where a login redirect points: path patterns → the identity provider's name (group 1 = realm).
IDENTITY_PROVIDERS: tuple[tuple[str, str], ...] = (
    (r"/realms/([^/]+)/protocol/openid-connect/", "Keycloak"),
    (r"/adfs/", "ADFS"),
    (r"/oauth2/v2\.0/authorize|login\.microsoftonline\.com", "Microsoft Entra ID"),
    (r"/cas/login", "CAS"),
)
# Login redirects that name the product: dcm4chee-arc's Keycloak clients (UI_CLIENT_ID and
# RS_CLIENT_ID of the dcm4che docker images, realm "dcm4che").
REDIRECT_MARKERS: tuple[tuple[str, str], ...] = (
    (r"[?&]client_id=dcm4chee-arc-(ui|rs)\b", "dcm4chee-arc"),
)
LOGIN_PATH = re.compile(r"(?i)/(login|logon|signin|sign-in|sso|auth|session/new)\b")

_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_APP_CONFIG_SRC = re.compile(r"""src\s*=\s*["']([^"']*app-config\.js[^"']*)["']""", re.IGNORECASE)
_QIDO_ROOT = re.compile(r"""qidoRoot\s*:\s*["'`]([^"'`]{1,500})["'`]""")
_AUTH_PARAM = re.compile(r"""realm\s*=\s*(?:"([^"]*)"|([^\s,]+))""", re.IGNORECASE)


@dataclass(frozen=True)
class PageMatch:
    product: Product
    component: str
    data_bearing: bool
    login_form: bool


def page_title(text: str) -> str | None:
    m = _TITLE.search(text)
    if not m:
        return None
    title = " ".join(html.unescape(m.group(1)).split())
    return title[:TITLE_CAP] or None


def match_page(text: str) -> PageMatch | None:
    """The product an HTML page names, or None."""
    title = page_title(text) or ""
    for marker in PAGE_MARKERS:
        if marker.title and not re.search(marker.title, title):
            continue
        if marker.body and not all(s in text for s in marker.body):
            continue
        version = None
        if marker.version:
            m = re.search(marker.version, title) or re.search(marker.version, text)
            version = version_or_none(m.group(1)) if m else None
        return PageMatch(Product(name=marker.product, version=version), marker.component,
                         marker.data_bearing, marker.login_form)
    return None


def parse_json(body: bytes) -> object | None:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def orthanc_system(data: object) -> Product | None:
    """Orthanc from its /system answer: a Version string and most of the known keys."""
    if not isinstance(data, dict) or not isinstance(data.get("Version"), str):
        return None
    if len(ORTHANC_SYSTEM_KEYS & data.keys()) < 3:
        return None
    # The peer's free text: only a string shaped like a version is kept as one.
    return Product(name="Orthanc", version=version_or_none(data["Version"]))


def orthanc_read_only(data: object) -> bool | None:
    """Orthanc 1.12.5 added a "ReadOnly" option; whether /system shows it is UNCONFIRMED, so
    only an explicit boolean there counts."""
    value = data.get("ReadOnly") if isinstance(data, dict) else None
    return value if isinstance(value, bool) else None


# A count no archive holds: JSON's largest exact integer. Above it a peer's number is not a count,
# and it would not fit the store's 64-bit columns either (SQLite raises on a larger int).
MAX_COUNT = 2**53 - 1


def count_or_none(value: object) -> int | None:
    """A peer's count if it is a whole number from 0 to MAX_COUNT, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    return None


def orthanc_counts(data: object) -> dict[str, int]:
    """The four counts of Orthanc's /statistics; nothing else from the answer is kept."""
    if not isinstance(data, dict):
        return {}
    out = {}
    for field, key in ORTHANC_COUNT_KEYS.items():
        value = count_or_none(data.get(key))
        if value is not None:
            out[field] = value
    return out


def dcm4chee_count(data: object) -> int | None:
    """dcm4chee-arc's QIDO count endpoints answer {"count": N}."""
    return count_or_none(data.get("count")) if isinstance(data, dict) else None


def dcm4chee_ae_titles(data: object) -> list[str]:
    """AE titles from /dcm4chee-arc/aets (a list of AE descriptions, no patient data)."""
    if not isinstance(data, list):
        return []
    titles = [item.get("dicomAETitle") for item in data if isinstance(item, dict)]
    return [t for t in titles if isinstance(t, str) and re.fullmatch(r"[ -~]{1,16}", t)]


def qido_answer_open(status: int, body: bytes) -> bool:
    """A QIDO-RS search answered without credentials: 204, or 200 with a JSON array."""
    if status == 204:
        return True
    return status == 200 and isinstance(parse_json(body), list)


def www_authenticate(value: str | None) -> str | None:
    """'Basic "Orthanc Secure Area"' from a WWW-Authenticate header (scheme and realm only)."""
    if not value:
        return None
    scheme = value.strip().split(None, 1)[0][:20] if value.strip() else ""
    m = _AUTH_PARAM.search(value)
    realm = (m.group(1) if m and m.group(1) is not None else (m.group(2) if m else None))
    if realm:
        return f'{scheme} "{realm[:80]}"'
    return scheme or None


def login_redirect(location: str | None) -> str | None:
    """A description of the login a redirect leads to ('Keycloak realm "dcm4che"'), or None."""
    if not location:
        return None
    for pattern, name in IDENTITY_PROVIDERS:
        m = re.search(pattern, location)
        if m:
            realm = m.group(1) if m.groups() else None
            return f'{name} realm "{realm[:80]}"' if realm else name
    try:
        path = urlsplit(location).path
    except ValueError:  # a peer's malformed URL ("http://[\\]/") names no login page
        return None
    if LOGIN_PATH.search(path or ""):
        return "login page"
    return None


def product_from_redirect(location: str | None) -> Product | None:
    """The product a login redirect names (its identity provider client), or None."""
    for pattern, name in REDIRECT_MARKERS:
        if location and re.search(pattern, location):
            return Product(name=name)
    return None


def app_config_path(page: str) -> str:
    """Where an OHIF page loads its app-config.js from (OHIF's default: /app-config.js)."""
    m = _APP_CONFIG_SRC.search(page)
    return m.group(1) if m else "/app-config.js"


def ohif_backends(config_js: str) -> list[str]:
    """The qidoRoot URLs an OHIF app-config names, with any user:password and query removed."""
    out: list[str] = []
    for m in _QIDO_ROOT.finditer(config_js):
        url = sanitize_url(m.group(1))
        if url and url not in out:
            out.append(url)
    return out[:5]


def sanitize_url(url: str) -> str | None:
    """A URL fit for a report: no credentials, no query, no fragment, bounded length."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))[:300] or None
