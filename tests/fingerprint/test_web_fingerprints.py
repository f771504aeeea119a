"""Web fingerprints from response shapes written by hand for these tests (after each product's
own source, named in fingerprint/web.py), plus property tests: any input parses or gives None."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pacswatch.fingerprint import web as fp

# Orthanc 1.10.1's /system, as the Debian package answers it.
ORTHANC_SYSTEM = {
    "ApiVersion": 16, "CheckRevisions": False, "DatabaseBackendPlugin": None, "DatabaseVersion": 6,
    "DicomAet": "ORTHANC", "DicomPort": 4242, "HttpPort": 8042, "IsHttpServerSecure": False,
    "Name": "MyOrthanc", "PluginsEnabled": True, "StorageAreaPlugin": None, "Version": "1.10.1",
}
ORTHANC_STATISTICS = {
    "CountInstances": 6, "CountPatients": 3, "CountSeries": 4, "CountStudies": 4,
    "TotalDiskSize": "12345", "TotalDiskSizeMB": 0, "TotalUncompressedSize": "12345", "TotalUncompressedSizeMB": 0,
}


def html(title: str, body: str = "") -> str:
    return f"<!DOCTYPE html>\n<html>\n<head>\n  <meta charset=\"utf-8\">\n  <title>{title}</title>\n</head>\n<body>{body}</body></html>"


@pytest.mark.parametrize("page, product, component, version", [
    (html("Orthanc Explorer"), "Orthanc", "Orthanc Explorer", None),
    (html("Orthanc Explorer 2", '<div id="app"></div><script type="module" src="/src/main.js"></script>'),
     "Orthanc", "Orthanc Explorer 2", None),
    (html("Orthanc - DICOMweb client"), "Orthanc", "Orthanc DICOMweb client", None),
    (html("dcm4chee-arc-ui", '<base href="/dcm4chee-arc/ui2/"><app-root></app-root>'),
     "dcm4chee-arc", "dcm4chee-arc UI", None),
    (html("OHIF Viewer", '<script src="/app-config.js"></script>'), "OHIF Viewer", "OHIF Viewer", None),
    ("<HEAD><TITLE>Conquest DICOM server - version 1.5.0c</TITLE></HEAD><BODY BGCOLOR='CFDFCF'>"
     "<H1>Welcome to the Conquest DICOM server - version 1.5.0c</H1>", "Conquest", "Conquest web (dgate)", "1.5.0c"),
    # The Lua web pages print the version with no space after "version".
    ("<html><head><title>Conquest DICOM server - version1.4.19d</title>", "Conquest", "Conquest web (dgate)",
     "1.4.19d"),
    ('<html><head><title>Horos Web Portal</title><link rel="stylesheet" href="/style.css"/>'
     '<link rel="alternate stylesheet" href="/iPhoneStyle.css"/><script src="/styleswitcher.js"></script></head>'
     '<form action="/main" method="post">', "Horos/OsiriX", "Horos/OsiriX Web Portal", None),
    (html("Dicoogle Web", "<h1>DICOOGLE: Open-Source P2P PACS</h1>"), "Dicoogle", "Dicoogle web", None),
])
def test_page_markers(page, product, component, version):
    match = fp.match_page(page)
    assert match is not None
    assert (match.product.name, match.component, match.product.version) == (product, component, version)


def test_conquest_is_data_bearing_and_horos_is_a_login_form():
    assert fp.match_page(html("Conquest DICOM server - version 1.5.0")).data_bearing
    horos = fp.match_page('<link href="/iPhoneStyle.css"/><script src="/styleswitcher.js"></script>')
    assert horos.login_form and not horos.data_bearing


@pytest.mark.parametrize("page", [
    html("Welcome to nginx!"), html("Sign in - Intranet", '<form action="/login">'), html("Apache2 Debian Default Page"),
    html("My Orthanc Explorer notes"),  # anchored titles: a page about Orthanc is not Orthanc
    "", "not html at all", "<title></title>",
])
def test_unrelated_pages_match_nothing(page):
    assert fp.match_page(page) is None


def test_page_title_unescapes_collapses_and_caps():
    assert fp.page_title("<TITLE lang=en>\n  OHIF&nbsp;Viewer \n</TITLE>") == "OHIF Viewer"  # &nbsp; is whitespace too
    assert fp.page_title("<title>" + "x" * 1000 + "</title>") == "x" * fp.TITLE_CAP
    assert fp.page_title("<title>  </title>") is None
    assert fp.page_title("no title") is None


def test_orthanc_system_matches_keys_not_name():
    assert fp.orthanc_system(ORTHANC_SYSTEM).model_dump() == {"name": "Orthanc", "version": "1.10.1"}
    assert fp.orthanc_system({"Name": "Orthanc", "Version": "1.10.1"}) is None  # too few of the keys
    assert fp.orthanc_system({**ORTHANC_SYSTEM, "Version": 1}) is None
    assert fp.orthanc_system([ORTHANC_SYSTEM]) is None
    assert fp.orthanc_system(None) is None
    # An old Orthanc (0.9) without ApiVersion still has enough of the keys.
    old = {k: v for k, v in ORTHANC_SYSTEM.items() if k not in ("ApiVersion", "CheckRevisions", "IsHttpServerSecure")}
    assert fp.orthanc_system(old).version == "1.10.1"


def test_orthanc_read_only_only_from_an_explicit_boolean():
    assert fp.orthanc_read_only(ORTHANC_SYSTEM) is None
    assert fp.orthanc_read_only({**ORTHANC_SYSTEM, "ReadOnly": True}) is True
    assert fp.orthanc_read_only({**ORTHANC_SYSTEM, "ReadOnly": "true"}) is None


def test_orthanc_counts_keep_only_the_four_counts():
    assert fp.orthanc_counts(ORTHANC_STATISTICS) == {"patients": 3, "studies": 4, "series": 4, "instances": 6}
    assert fp.orthanc_counts({"CountPatients": True, "CountStudies": -1, "CountSeries": "4", "CountInstances": 2}) \
        == {"instances": 2}
    assert fp.orthanc_counts([1, 2]) == {}


def test_dcm4chee_shapes():
    assert fp.dcm4chee_count({"count": 42}) == 42
    assert fp.dcm4chee_count({"count": "42"}) is None
    assert fp.dcm4chee_count([]) is None
    aets = [{"dicomAETitle": "DCM4CHEE", "dicomDescription": "Hide instances rejected for Quality Reasons"},
            {"dicomAETitle": "IOCM_REGULAR_USE"}, {"dicomAETitle": "x" * 40}, {"no": "title"}, "junk"]
    assert fp.dcm4chee_ae_titles(aets) == ["DCM4CHEE", "IOCM_REGULAR_USE"]


@pytest.mark.parametrize("status, body, open_", [
    (204, b"", True), (200, b"[]", True), (200, b"[\n]", True), (200, b"{}", False), (200, b"<html>", False),
    (401, b"[]", False), (404, b"", False),
])
def test_qido_answer_open(status, body, open_):
    assert fp.qido_answer_open(status, body) is open_


@pytest.mark.parametrize("header, expected", [
    ('Basic realm="Orthanc Secure Area"', 'Basic "Orthanc Secure Area"'),
    ('Bearer realm="dcm4che", error="invalid_token"', 'Bearer "dcm4che"'),
    ("Basic realm=simple", 'Basic "simple"'),
    ("Negotiate", "Negotiate"),
    ("", None), (None, None),
])
def test_www_authenticate(header, expected):
    assert fp.www_authenticate(header) == expected


@pytest.mark.parametrize("location, expected", [
    ("https://sso.example:8843/realms/dcm4che/protocol/openid-connect/auth?client_id=dcm4chee-arc-ui",
     'Keycloak realm "dcm4che"'),
    ("/auth/realms/hospital/protocol/openid-connect/auth?x=1", 'Keycloak realm "hospital"'),
    ("https://login.microsoftonline.com/tenant/oauth2/v2.0/authorize", "Microsoft Entra ID"),
    ("/login?next=/", "login page"),
    ("/app/explorer.html", None), ("/authority/home", None), (None, None),
])
def test_login_redirect(location, expected):
    assert fp.login_redirect(location) == expected


OHIF_V3_CONFIG = """window.config = {
  routerBasename: '/',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        friendlyName: 'PACS',
        qidoRoot: 'https://viewer:s3cret@pacs.example.org:8042/dicom-web?token=abc',
        wadoRoot: 'https://pacs.example.org:8042/dicom-web',
      },
    },
    { sourceName: 'local', configuration: { qidoRoot: "/dicom-web" } },
  ],
};"""
OHIF_V2_CONFIG = """window.config = { servers: { dicomWeb: [{ name: 'Orthanc',
  wadoUriRoot: 'http://10.1.2.3:8042/wado', qidoRoot: `http://10.1.2.3:8042/dicom-web`, qidoSupportsIncludeField: false }] } };"""


def test_ohif_backends_are_reported_without_credentials_or_query():
    assert fp.ohif_backends(OHIF_V3_CONFIG) == ["https://pacs.example.org:8042/dicom-web", "/dicom-web"]
    assert fp.ohif_backends(OHIF_V2_CONFIG) == ["http://10.1.2.3:8042/dicom-web"]
    assert fp.ohif_backends("window.config = {};") == []


def test_app_config_path():
    assert fp.app_config_path('<script src="/ohif/app-config.js?v=3"></script>') == "/ohif/app-config.js?v=3"
    assert fp.app_config_path("<title>OHIF Viewer</title>") == "/app-config.js"


def test_sanitize_url():
    assert fp.sanitize_url("http://u:p@[::1]:8042/x?y#z") == "http://[::1]:8042/x"
    assert fp.sanitize_url("http://host:notaport/") == "http://host/"
    assert len(fp.sanitize_url("http://h/" + "a" * 1000)) == 300


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_text_matchers_never_raise(text):
    fp.match_page(text)
    fp.page_title(text)
    fp.ohif_backends(text)
    fp.app_config_path(text)
    fp.www_authenticate(text)
    fp.login_redirect(text)
    fp.sanitize_url(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.fixed_dictionaries({}, optional={k: json_values for k in ORTHANC_SYSTEM})))
def test_json_parsers_never_raise(value):
    body = json.dumps(value).encode()
    data = fp.parse_json(body)
    fp.orthanc_system(data)
    fp.orthanc_read_only(data)
    counts = fp.orthanc_counts(data)
    assert all(isinstance(v, int) and v >= 0 for v in counts.values())
    fp.dcm4chee_count(data)
    fp.dcm4chee_ae_titles(data)
    fp.qido_answer_open(200, body)


@given(st.binary(max_size=500))
def test_parse_json_takes_any_bytes(body):
    fp.parse_json(body)


def test_a_keycloak_redirect_can_name_dcm4chee():
    location = ("https://pacs.example:8843/realms/dcm4che/protocol/openid-connect/auth?client_id=dcm4chee-arc-ui"
                "&redirect_uri=http%3A%2F%2Fpacs.example%3A8080%2Fdcm4chee-arc%2Fui2%2F&response_type=code")
    assert fp.product_from_redirect(location).name == "dcm4chee-arc"
    assert fp.login_redirect(location) == 'Keycloak realm "dcm4che"'
    assert fp.product_from_redirect("https://sso.example/realms/x/protocol/openid-connect/auth?client_id=intranet") is None


@pytest.mark.parametrize("value, count", [
    (0, 0), (12, 12), (fp.MAX_COUNT, fp.MAX_COUNT), (fp.MAX_COUNT + 1, None), (10**30, None), (-1, None),
    (True, None), (3.0, None), ("12", None), (None, None),
])
def test_a_count_is_a_whole_number_an_archive_could_hold(value, count):
    assert fp.count_or_none(value) == count
    assert fp.orthanc_counts({"CountPatients": value}).get("patients") == count
    assert fp.dcm4chee_count({"count": value}) == count
