"""assess_http: each rule of issue 3 from a hand-built record."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pacswatch.assess import assess
from pacswatch.assess_http import assess_http
from pacswatch.record import DicomWeb, HttpFacts, Product, Record, TlsFacts

ORTHANC = Product(name="Orthanc", version="1.10.1")


def record(status: str = "success", **http) -> Record:
    facts = HttpFacts(url="http://127.0.0.1:8042/", **http)
    return Record(ip="127.0.0.1", port=8042, status=status, service="http", product=facts.product, http=facts)


@pytest.mark.parametrize("facts, severity, words", [
    (dict(product=ORTHANC, auth="open", patients=3, studies=4, series=4, instances=6), "critical",
     "holds data (3 patients, 4 studies, 4 series, 6 instances)"),
    (dict(product=ORTHANC, auth="default-credentials", status_code=401), "critical", "default credentials"),
    (dict(product=ORTHANC, auth="open", patients=0, studies=0, series=0, instances=0), "high", "no data"),
    (dict(product=Product(name="Conquest"), auth="open"), "high", "not counted"),
    (dict(product=None, auth="open", dicomweb=DicomWeb(present=True, open=True)), "high", "DICOMweb service"),
    (dict(product=Product(name="dcm4chee-arc"), auth="auth-required", status_code=200, title="dcm4chee-arc-ui",
          realm='Bearer "dcm4che"'), "medium", 'asks for a login (Bearer "dcm4che")'),
    (dict(product=ORTHANC, auth="auth-required", status_code=401, realm='Basic "Orthanc Secure Area"'), "low",
     "asks for a login"),
    (dict(product=Product(name="OHIF Viewer"), status_code=200, title="OHIF Viewer"), "low", "not found or not checked"),
])
def test_rules(facts, severity, words):
    got, reasons = assess_http(record(**facts))
    assert got == severity
    assert any(words in r for r in reasons), reasons


def test_open_and_writable_with_no_data_is_high_with_a_reason():
    got, reasons = assess_http(record(product=ORTHANC, auth="open", patients=0, writable=True))
    assert got == "high" and any("Uploads" in r for r in reasons)


def test_writable_behind_a_login_is_not_raised():
    got, _ = assess_http(record(product=ORTHANC, auth="auth-required", status_code=401, writable=True))
    assert got == "low"


def test_open_dicomweb_raises_a_protected_product_page_to_high():
    got, reasons = assess_http(record(product=Product(name="OHIF Viewer"), status_code=200, title="OHIF Viewer",
                                      auth="auth-required", dicomweb=DicomWeb(present=True, open=True)))
    assert got == "high" and any("QIDO-RS" in r for r in reasons)


@pytest.mark.parametrize("facts", [
    dict(product=None, status_code=200, title="Welcome to nginx!"),
    dict(product=None, status_code=401, auth="auth-required", realm='Basic "Router"'),
])
def test_unrelated_web_servers_give_no_finding(facts):
    assert assess_http(record(**facts)) == (None, [])


def test_failed_endpoints_give_no_finding():
    assert assess_http(Record(ip="127.0.0.1", port=80, status="io-timeout")) == (None, [])


def test_tls_reasons_are_added():
    tls = TlsFacts(handshake=True, version="TLSv1", expired=True, not_after=datetime(2020, 1, 1, tzinfo=timezone.utc))
    _, reasons = assess_http(record(product=ORTHANC, auth="open", patients=1, tls=tls))
    assert any("retired protocol" in r for r in reasons) and any("expired" in r for r in reasons)


def test_the_general_assess_dispatches_web_records():
    r = record(product=ORTHANC, auth="open", patients=1)
    assert assess(r) == assess_http(r)
