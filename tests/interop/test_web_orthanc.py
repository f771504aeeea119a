"""The web probe against real Orthanc 1.10 (Debian) and its DICOMweb plugin, on loopback.

Three set-ups from issue 3: (a) open, remote access on, no authentication, holding the fake
patients; (b) authentication on with a registered user; (c) remote access on with no user, where
Orthanc >= 1.5.8 turns authentication on with the default user orthanc:orthanc. Every record is
also a leak check: no fake patient string may appear in it.

HTTPS is tested against the lab (tests/probes/test_http_probe.py), not Orthanc: Debian's Orthanc
1.10.1 dies with SIGSEGV on the first TLS connection when `SslEnabled` is on (curl does the same
to it), so it cannot serve as a TLS peer here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import fakedata
import pytest
from servers import DICOMWEB_PLUGIN, OrthancServer, ServerError

from pacswatch.probes.base import Endpoint, ProbeContext, ProbeOptions
from pacswatch.probes.http import HttpProbe
from pacswatch.record import Record
from pacswatch.scan.runner import probe_endpoint

pytestmark = pytest.mark.interop


def start(request, interop_pool, interop_dir, bind_shim, name: str, overrides: dict, **kwargs) -> OrthancServer:
    if not DICOMWEB_PLUGIN.exists():
        pytest.fail(f"interop tests need {DICOMWEB_PLUGIN} (apt install orthanc-dicomweb)", pytrace=False)
    server = OrthancServer(interop_pool.next(), workdir=interop_dir / name, bind_shim=bind_shim, dicomweb=True,
                           config_overrides=overrides, **kwargs)
    try:
        server.start()
    except (ServerError, RuntimeError, OSError) as exc:
        pytest.fail(f"could not start {server!r}: {exc}", pytrace=False)
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="module")
def web_open(request, interop_pool, interop_dir, bind_shim, fake_files) -> Iterator[OrthancServer]:
    yield start(request, interop_pool, interop_dir, bind_shim, "web-open",
                {"RemoteAccessAllowed": True, "AuthenticationEnabled": False}, load=fake_files)


@pytest.fixture(scope="module")
def web_user(request, interop_pool, interop_dir, bind_shim) -> Iterator[OrthancServer]:
    yield start(request, interop_pool, interop_dir, bind_shim, "web-user",
                {"RemoteAccessAllowed": True, "AuthenticationEnabled": True,
                 "RegisteredUsers": {"alice": "pw-interop-7731"}})


@pytest.fixture(scope="module")
def web_default_user(request, interop_pool, interop_dir, bind_shim) -> Iterator[OrthancServer]:
    # No AuthenticationEnabled key and no users: Orthanc enables orthanc:orthanc by itself.
    yield start(request, interop_pool, interop_dir, bind_shim, "web-default-user",
                {"RemoteAccessAllowed": True, "AuthenticationEnabled": None, "RegisteredUsers": None},
                credentials=("orthanc", "orthanc"))


@pytest.fixture
def scan(assert_loopback):
    def run(server: OrthancServer, **options) -> Record:
        assert_loopback(server.ip)
        ctx = ProbeContext(options=ProbeOptions(**options))
        record = asyncio.run(probe_endpoint(HttpProbe(), ctx, Endpoint(server.ip, server.http_port)))
        leaked = fakedata.find_markers(record.model_dump_json())
        assert not leaked, f"patient data in the record: {leaked}"
        return record

    return run


def test_open_orthanc_with_patients_is_critical(web_open, scan):
    record = scan(web_open)
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
    assert web_open.statistics()["CountInstances"] == fakedata.N_INSTANCES  # nothing was written


def test_authentication_with_a_registered_user_is_a_login(web_user, scan):
    plain = scan(web_user)
    opted_in = scan(web_user, try_default_credentials=True)  # orthanc:orthanc is not alice's
    for record in (plain, opted_in):
        assert record.product.name == "Orthanc"
        assert record.http.auth == "auth-required" and record.http.realm == 'Basic "Orthanc Secure Area"'
        assert record.severity == "low"
        assert record.http.patients is None and not record.http.dicomweb.open
    assert "default credentials tried" in opted_in.detail and plain.detail is None


def test_remote_access_without_users_gets_the_default_user(web_default_user, scan):
    plain = scan(web_default_user)
    opted_in = scan(web_default_user, try_default_credentials=True)
    assert plain.http.auth == "auth-required" and plain.severity == "low"  # no login without the opt-in
    assert opted_in.http.auth == "default-credentials" and opted_in.severity == "critical"
    assert opted_in.product.version == "1.10.1"  # learnt from /system once logged in
