"""Probes against hostile peers really started on loopback (issue 11): what a peer sends may
be odd, malformed or meant for a person reading the report, and the finding must survive it."""

from __future__ import annotations

import asyncio

import pytest

from pacswatch.lab.manifest import check_record
from pacswatch.lab.web import HOSTILE_TEXT_KINDS, VERSION_TEXT, expected, start_web_lab
from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions, Timeouts
from pacswatch.probes.http import HttpProbe
from pacswatch.record import Record

WEB_IP, WEB_TRAP_IP = "127.0.83.1", "127.0.83.3"


@pytest.fixture(scope="module")
def web_lab():
    lab = start_web_lab(WEB_IP, WEB_TRAP_IP, kinds=HOSTILE_TEXT_KINDS)
    yield lab
    lab.stop()


def web_scan(lab, kind: str) -> Record:
    ep = next(e for e in lab.endpoints if e.kind == kind)
    ctx = ProbeContext(options=ProbeOptions(timeouts=Timeouts(http=2.0)))
    return asyncio.run(HttpProbe().run(ctx, Endpoint(ep.ip, ep.port)))


@pytest.mark.parametrize("kind", HOSTILE_TEXT_KINDS)
def test_hostile_text_around_an_open_orthanc_keeps_the_critical_finding(web_lab, kind):
    # charset=undefined / idna, a control character in OHIF's qidoRoot, backslashes in a
    # Location, a message as the version: each once ended the probe in `error`, no severity.
    record = web_scan(web_lab, kind)
    ep = next(e for e in web_lab.endpoints if e.kind == kind)
    assert record.status == "success" and record.severity == "critical", record.detail
    assert check_record(ep, record) == [], record.model_dump_json(indent=1)
    assert record.http.patients == expected(kind)["http.patients"] > 0
    assert record.http.studies == expected(kind)["http.studies"] > 0
    # Whatever the peer put in the notes is one clean line.
    assert record.detail and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in record.detail)
    assert web_lab.trap_hits() == []


def test_a_malformed_location_is_reported_as_a_fact(web_lab):
    record = web_scan(web_lab, "backslash-location")
    assert "redirect to a malformed URL not followed: http://[\\]/\\app\\explorer.html" in record.detail


def test_an_ohif_backend_with_a_control_character_is_reported_escaped(web_lab):
    record = web_scan(web_lab, "ohif-control-qido")
    assert "OHIF Viewer" in record.http.components
    assert record.http.backends == ["/dicom\\x01web\\x1b[31m"]


def test_a_version_that_is_a_message_is_no_version(web_lab):
    record = web_scan(web_lab, "version-text")
    assert record.product.name == "Orthanc" and record.product.version is None
    assert "URGENT" not in record.model_dump_json()
    assert VERSION_TEXT.startswith("1\n")  # it would pass a check of its first character alone
