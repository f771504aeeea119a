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
from pacswatch.scan.runner import probe_endpoint

WEB_IP, WEB_TRAP_IP = "127.0.83.1", "127.0.83.3"


@pytest.fixture(scope="module")
def web_lab():
    lab = start_web_lab(WEB_IP, WEB_TRAP_IP, kinds=HOSTILE_TEXT_KINDS)
    yield lab
    lab.stop()


def web_scan(lab, kind: str) -> Record:
    ep = next(e for e in lab.endpoints if e.kind == kind)
    ctx = ProbeContext(options=ProbeOptions(timeouts=Timeouts(http=2.0)))
    return asyncio.run(probe_endpoint(HttpProbe(), ctx, Endpoint(ep.ip, ep.port)))


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


def test_counts_larger_than_any_archive_are_not_counts_and_the_scan_stores_the_finding(tmp_path):
    # 10**30 patients: not a count, and more than the store's 64-bit columns take (SQLite raised
    # OverflowError on it). The open API is still reported, uncounted.
    import sqlite3

    from pacswatch.cli import main

    lab = start_web_lab("127.0.83.40", "127.0.83.42", kinds=("huge-counts",))
    try:
        port = lab.endpoints[0].port
        out, db = tmp_path / "out.jsonl", tmp_path / "scan.db"
        code = main(["scan", "127.0.83.40", "--ports", str(port), "--web-ports", str(port), "--quiet",
                     "-o", str(out), "--database", str(db)])
    finally:
        lab.stop()
    assert code == 0
    record = Record.model_validate_json(out.read_text())
    assert check_record(lab.endpoints[0], record) == [], record.model_dump_json(indent=1)
    assert record.severity == "high" and record.http.patients is None
    with sqlite3.connect(db) as conn:
        assert conn.execute("select severity, patients from services").fetchall() == [("high", None)]


# ---------------------------------------------------------------- AE titles we send


@pytest.mark.parametrize("flag, value", [("--calling-ae", "PACS\x1b[31m"), ("--calling-ae", "A\nB"),
                                         ("--ae-guess", "ANY-SCP,BACK\\SLASH"), ("--ae-guess", "ORTHANC,A\tB"),
                                         ("--calling-ae", "SEVENTEEN-LETTERS")])
def test_the_command_line_refuses_an_invalid_ae_title(flag, value, capsys):
    from pacswatch.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["probe", "127.0.0.1:104", flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}: " in capsys.readouterr().err


def test_an_invalid_calling_ae_is_never_sent():
    # Options built without the command line (a stored scan, an API caller): the protocol core
    # refuses to encode the title, and the probe reports our error without connecting.
    from pacswatch.identity import Identity
    from pacswatch.probes.dicom.probe import DicomProbe

    accepted = []

    async def run() -> Record:
        server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.83.9", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            ctx = ProbeContext(options=ProbeOptions(identity=Identity(calling_ae="PACS\x1b[31m")))
            return await probe_endpoint(DicomProbe(), ctx, Endpoint("127.0.83.9", port))
        finally:
            server.close()
            for writer in accepted:
                writer.close()

    record = asyncio.run(run())
    assert record.status == "error" and "invalid AE title" in record.detail
    assert "\x1b" not in record.detail
    assert accepted == []


# ---------------------------------------------------------------- a C-FIND that never ends

FLOOD_IP = "127.0.83.20"


@pytest.fixture(scope="module")
def flood():
    from pacswatch.lab.hostile import HostilePeers

    peers = HostilePeers([("find-flood", FLOOD_IP, 0)], hold=60.0)
    (port,) = peers.start()
    yield Endpoint(FLOOD_IP, port)
    peers.stop()


@pytest.mark.parametrize("limit", [1000, 40])
def test_a_find_flood_that_ignores_cancel_is_an_open_query(flood, limit):
    # Pending responses to a random StudyInstanceUID prove that the query is allowed: the count
    # so far is kept (at least `limit` studies), the association is aborted at the cap or the
    # deadline, and the finding is critical instead of 'allowed: null'.
    from pacswatch.probes.dicom.probe import DicomProbe

    timeouts = Timeouts.scaled(1.0)

    async def run() -> tuple[Record, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        ctx = ProbeContext(ProbeOptions(timeouts=timeouts, find_limit=limit))
        record = await probe_endpoint(DicomProbe(), ctx, flood)
        return record, loop.time() - started

    record, elapsed = asyncio.run(run())
    find = record.dicom.find
    assert record.status == "success", record.detail
    assert find.allowed is True and find.capped is True and find.studies == limit
    assert record.severity == "critical"
    assert any(f"at least {limit} studies" in reason for reason in record.reasons)
    assert record.dicom.released is None  # aborted, never released
    assert "association aborted" in record.detail
    assert elapsed < timeouts.release + timeouts.dimse + 1.0  # the cancel's grace, not the endpoint's


# ---------------------------------------------------------------- a web server on a DICOM port

DETECT_IP, DETECT_TRAP_IP = "127.0.83.30", "127.0.83.32"


@pytest.fixture(scope="module")
def web_on_dicom_ports():
    """Web servers on ports the DICOM probe is sent to: one answering its request with HTTP 400
    (lab/hostile.py), open Orthancs (plain and in TLS) that wait for a request head that never
    ends, and the intranet login page."""
    from pacswatch.lab.hostile import HostilePeers

    peers = HostilePeers([("http-not-dicom", DETECT_IP, 0), ("tarpit", DETECT_IP, 0)], hold=30.0)
    http_400, tarpit = peers.start()
    lab = start_web_lab(DETECT_IP, DETECT_TRAP_IP, kinds=("orthanc-open", "orthanc-open-tls", "login-page"))
    ports = {e.kind: e.port for e in lab.endpoints} | {"http-not-dicom": http_400, "tarpit": tarpit}
    yield ports, lab
    lab.stop()
    peers.stop()


def dicom_scan(port: int) -> tuple[Record, float]:
    from pacswatch.probes.dicom.probe import DicomProbe

    async def run() -> tuple[Record, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        ctx = ProbeContext(ProbeOptions(timeouts=Timeouts.scaled(1.0)))
        return await probe_endpoint(DicomProbe(), ctx, Endpoint(DETECT_IP, port)), loop.time() - started

    return asyncio.run(run())


@pytest.mark.parametrize("kind, how", [("http-not-dicom", "in HTTP"), ("orthanc-open", "said nothing"),
                                       ("orthanc-open-tls", "said nothing"), ("login-page", "said nothing")])
def test_a_web_server_on_a_dicom_port_is_reported_as_http(web_on_dicom_ports, kind, how):
    ports, lab = web_on_dicom_ports
    record, elapsed = dicom_scan(ports[kind])
    assert record.status == "success" and record.service == "http", record.detail
    assert record.dicom is None and record.detail.startswith(("answered the DICOM association request in HTTP"
                                                              if how == "in HTTP" else "said nothing to DICOM"))
    if kind.startswith("orthanc-open"):
        # The web probe's whole finding: product, counts, severity.
        assert record.product.name == "Orthanc" and record.severity == "critical"
        assert record.http.patients == expected(kind)["http.patients"]
        assert record.transport == ("tls" if kind.endswith("tls") else "tcp")
    if kind == "login-page":
        assert record.http.auth == "auth-required" and record.severity is None
    if how == "in HTTP":
        assert elapsed < Timeouts.scaled(1.0).association  # no DICOM timeout waited for
    else:  # the association's timeout (2 s here), a GET made during it, then the web probe
        assert elapsed < Timeouts.scaled(1.0).association + 1.5
    assert lab.trap_hits() == []


def test_a_silent_port_that_is_not_http_stays_a_timeout_and_the_check_is_bounded(web_on_dicom_ports):
    ports, _ = web_on_dicom_ports
    record, elapsed = dicom_scan(ports["tarpit"])
    assert record.status == "io-timeout" and record.service is None and record.http is None
    timeouts = Timeouts.scaled(1.0)
    # The GET is made during the association's wait, timed to end with it (detect.QuietCheck):
    # a silent port costs that one wait, not the wait and then the GET (1 s more here).
    assert timeouts.association - 0.1 < elapsed < timeouts.association + 0.4
