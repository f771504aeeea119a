"""Service detection on any port (issue 12, item 11): a port scanned as DICOM that turns out to
be a web server is reported as `service: http` with the web probe's facts, not as a
protocol-error or an io-timeout. Real Orthanc with a login on HTTP port 8043 and an unrelated
intranet login page on 4006, both on one loopback address, scanned as `--ports 8043,4006`
without `--web-ports`."""

from __future__ import annotations

import json

import fakedata
import pytest
from servers import OrthancServer, ServerError

from pacswatch.lab.web import start_web_lab

pytestmark = pytest.mark.interop

ORTHANC_HTTP_PORT, LOGIN_PORT = 8043, 4006


@pytest.fixture(scope="module")
def web_ports_host(request, interop_pool, interop_dir, bind_shim):
    ip = interop_pool.next()
    orthanc = OrthancServer(ip, http_port=ORTHANC_HTTP_PORT, workdir=interop_dir / "web-port-orthanc",
                            bind_shim=bind_shim,
                            config_overrides={"RemoteAccessAllowed": True, "AuthenticationEnabled": True,
                                              "RegisteredUsers": {"alice": "pw-interop-4413"}})
    try:
        orthanc.start()
    except (ServerError, RuntimeError, OSError) as exc:
        pytest.fail(f"could not start {orthanc!r}: {exc}", pytrace=False)
    request.addfinalizer(orthanc.stop)
    # The lab's intranet login page (kind i listens on base_port + i), and its "other host" trap.
    lab = start_web_lab(ip, interop_pool.next(), kinds=("login-page",), base_port=LOGIN_PORT)
    request.addfinalizer(lab.stop)
    assert lab.endpoints[0].port == LOGIN_PORT
    return ip, orthanc, lab


def test_scan_reports_web_servers_found_on_ports_scanned_as_dicom(web_ports_host, tmp_path, assert_loopback):
    from pacswatch.cli import main

    ip, orthanc, lab = web_ports_host
    assert_loopback(ip)
    out = tmp_path / "out.jsonl"
    code = main(["scan", ip, "--ports", f"{ORTHANC_HTTP_PORT},{LOGIN_PORT}", "--timeout", "1", "--quiet",
                 "-o", str(out), "--database", str(tmp_path / "scan.db")])
    assert code == 0
    records = {r["port"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(records) == [LOGIN_PORT, ORTHANC_HTTP_PORT]
    for record in records.values():
        assert record["status"] == "success" and record["service"] == "http", record
        assert record["http"]["auth"] == "auth-required", record
        assert record["dicom"] is None
    orthanc_record = records[ORTHANC_HTTP_PORT]
    assert orthanc_record["product"]["name"] == "Orthanc"
    assert orthanc_record["http"]["realm"] == 'Basic "Orthanc Secure Area"'
    assert orthanc_record["severity"] == "low"
    login = records[LOGIN_PORT]
    assert login["product"] is None and login["severity"] is None  # not PACS-related
    assert lab.trap_hits() == []
    assert not fakedata.find_markers(out.read_text())
