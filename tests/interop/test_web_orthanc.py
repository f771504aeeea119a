"""The web probe against real Orthanc 1.10 (Debian) and its DICOMweb plugin, on loopback.

Three set-ups from issue 3: (a) open, remote access on, no authentication, holding the fake
patients; (b) authentication on with a registered user; (c) remote access on with no user, where
Orthanc >= 1.5.8 turns authentication on with the default user orthanc:orthanc. Then the
no-patient-data check: no fake patient string appears in any record the probe made.

HTTPS is tested against the lab (tests/probes/test_http_probe.py), not Orthanc: Debian's Orthanc
1.10.1 dies with SIGSEGV on the first TLS connection when `SslEnabled` is on (curl does the same
to it), so it cannot serve as a TLS peer here.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # loopback, servers
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # fakedata

import fakedata  # noqa: E402
from loopback import build_bind_shim, install_guard  # noqa: E402
from servers import DICOMWEB_PLUGIN, OrthancServer, ServerError  # noqa: E402

from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions  # noqa: E402
from pacswatch.probes.http import HttpProbe  # noqa: E402
from pacswatch.record import Record  # noqa: E402

pytestmark = pytest.mark.interop
ORTHANC_IP = "127.0.81.1"
RECORDS: list[Record] = []  # every record made here, for the no-patient-data check


@pytest.fixture(scope="module", autouse=True)
def loopback_only():
    install_guard()  # any connect to a non-loopback address fails in this process


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    if not Path("/usr/sbin/Orthanc").exists() or not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc and its DICOMweb plugin are not installed (apt install orthanc orthanc-dicomweb)")
    try:
        return build_bind_shim(tmp_path_factory.mktemp("shim"))
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def fake_files(tmp_path_factory):
    return fakedata.write_files(tmp_path_factory.mktemp("fake"))


def orthanc(shim, overrides: dict, **kwargs) -> OrthancServer:
    try:
        return OrthancServer(ORTHANC_IP, config_overrides=overrides, dicomweb=True, bind_shim=shim, **kwargs).start()
    except ServerError as exc:
        pytest.fail(str(exc))


def scan(server: OrthancServer, **options) -> Record:
    ctx = ProbeContext(options=ProbeOptions(**options))
    record = asyncio.run(HttpProbe().run(ctx, Endpoint(server.ip, server.http_port)))
    RECORDS.append(record)
    assert leaks(record.model_dump_json()) == []
    return record


def leaks(text: str) -> list[str]:
    text = text.lower()
    return [m for m in fakedata.LEAK_MARKERS if m.lower() in text]


def test_open_orthanc_with_patients_is_critical(shim, fake_files):
    server = orthanc(shim, {"RemoteAccessAllowed": True, "AuthenticationEnabled": False}, load=fake_files)
    try:
        record = scan(server)
    finally:
        server.stop()
    facts = record.http
    assert record.status == "success" and record.service == "http", record.detail
    assert record.product.model_dump() == {"name": "Orthanc", "version": "1.10.1"}
    assert (facts.patients, facts.studies, facts.series, facts.instances) == (
        fakedata.N_PATIENTS, fakedata.N_STUDIES, fakedata.N_SERIES, fakedata.N_INSTANCES)
    assert facts.auth == "open" and record.severity == "critical"
    assert facts.dicomweb.present and facts.dicomweb.open  # the plugin answers QIDO-RS openly
    assert facts.writable is True  # inferred from the open REST API, never tried
    assert facts.title == "Orthanc Explorer" and facts.url.endswith("/app/explorer.html")
    assert "Orthanc DICOMweb plugin" in record.detail


def test_authentication_with_a_registered_user_is_a_login(shim):
    server = orthanc(shim, {"RemoteAccessAllowed": True, "AuthenticationEnabled": True,
                            "RegisteredUsers": {"alice": "pw-interop-7731"}})
    try:
        plain = scan(server)
        opted_in = scan(server, try_default_credentials=True)  # orthanc:orthanc is not alice's
    finally:
        server.stop()
    for record in (plain, opted_in):
        assert record.product.name == "Orthanc"
        assert record.http.auth == "auth-required" and record.http.realm == 'Basic "Orthanc Secure Area"'
        assert record.severity == "low"
        assert record.http.patients is None and not record.http.dicomweb.open
    assert "default credentials tried" in opted_in.detail and plain.detail is None


def test_remote_access_without_users_gets_the_default_user(shim):
    # No AuthenticationEnabled key and no users: Orthanc enables orthanc:orthanc by itself.
    server = orthanc(shim, {"RemoteAccessAllowed": True, "AuthenticationEnabled": None, "RegisteredUsers": None},
                     credentials=("orthanc", "orthanc"))
    try:
        plain = scan(server)
        opted_in = scan(server, try_default_credentials=True)
    finally:
        server.stop()
    assert plain.http.auth == "auth-required" and plain.severity == "low"  # no login without the opt-in
    assert opted_in.http.auth == "default-credentials" and opted_in.severity == "critical"
    assert opted_in.product.version == "1.10.1"  # learnt from /system once logged in


def test_no_fake_patient_data_in_any_web_record():
    if not RECORDS:
        pytest.skip("no Orthanc record was made")
    assert leaks("\n".join(r.model_dump_json() for r in RECORDS)) == []

