"""The interop fixtures themselves: each server starts on its own loopback address, answers a
pynetdicom C-ECHO, holds the fake patients, and says no the way the probe tests expect.

These pin down facts about the real servers (found by experiment, Orthanc 1.10.1, DCMTK 3.6.7,
pynetdicom 3.0.4) independently of pacswatch, so a failing probe test can be told apart from a
fixture that changed under it. Raw A-ASSOCIATE exchanges use `rawdicom.py`.
"""

from __future__ import annotations

import socket
import ssl

import pytest

import fakedata
import rawdicom as raw
from loopback import is_loopback
from scu import echo_and_count

pytestmark = pytest.mark.interop

ALL_CONTEXTS = (
    raw.VERIFICATION,
    raw.RANDOM_SYNTAX,
    raw.STUDY_FIND,
    raw.STUDY_MOVE,
    raw.STUDY_GET,
    raw.CT_STORAGE,
    raw.WORKLIST_FIND,
)
DCMTK_UID_PREFIX = "1.2.276.0.7230010.3."
PYNETDICOM_UID_PREFIX = "1.2.826.0.1.3680043.9.3811."


def _listens_on_loopback_only(server) -> None:
    listeners = server.listeners()
    assert listeners, f"{server!r} has no listening socket"
    assert all(is_loopback(x.ip) for x in listeners), listeners
    # The bind shim pinned it to its own address, not merely to loopback.
    assert {x.ip for x in listeners} == {server.ip}, listeners


# --- Orthanc ---------------------------------------------------------------------------------


def test_orthanc_open_servers_up(orthanc_open):
    _listens_on_loopback_only(orthanc_open)
    assert {x.port for x in orthanc_open.listeners()} == {orthanc_open.dicom_port, orthanc_open.http_port}
    stats = orthanc_open.statistics()
    assert stats["CountPatients"] == fakedata.N_PATIENTS
    assert stats["CountStudies"] == fakedata.N_STUDIES
    assert stats["CountInstances"] == fakedata.N_INSTANCES
    # Any called AE is accepted (DicomCheckCalledAet false); FIND answers with everything.
    studies = echo_and_count(orthanc_open.ip, orthanc_open.port, called="PWRANDOM123")
    assert studies.established and studies.echo_status == 0
    assert (studies.count, studies.final_status) == (fakedata.N_STUDIES, 0)
    patients = echo_and_count(orthanc_open.ip, orthanc_open.port, level="PATIENT")
    assert (patients.count, patients.final_status) == (fakedata.N_PATIENTS, 0)


def test_orthanc_open_contexts_servers_up(orthanc_open):
    ans = raw.associate(orthanc_open.ip, orthanc_open.port, "PWRANDOM123", contexts=ALL_CONTEXTS)
    assert ans.kind == "ac"
    # Orthanc accepts the Q/R contexts (it decides per request), storage, echo; not worklist
    # (no worklist plugin loaded) and not a random 2.25 syntax (not promiscuous).
    assert ans.contexts == {
        raw.VERIFICATION: 0,
        raw.RANDOM_SYNTAX: 3,
        raw.STUDY_FIND: 0,
        raw.STUDY_MOVE: 0,
        raw.STUDY_GET: 0,
        raw.CT_STORAGE: 0,
        raw.WORKLIST_FIND: 3,
    }
    # Orthanc announces DCMTK's implementation class UID and version name.
    assert ans.implementation_class_uid.startswith(DCMTK_UID_PREFIX)
    assert ans.implementation_version_name.startswith("OFFIS_DCMTK_")


def test_orthanc_default_refuses_find_with_abort_servers_up(orthanc_default):
    _listens_on_loopback_only(orthanc_default)
    res = echo_and_count(orthanc_default.ip, orthanc_default.port, called="PWRANDOM123")
    assert res.established and res.echo_status == 0
    # DicomAlwaysAllowFind is false by default: the FIND gets no status at all, Orthanc aborts.
    assert res.count == 0 and res.final_status is None


def test_orthanc_locked_servers_up(orthanc_locked):
    _listens_on_loopback_only(orthanc_locked)
    # A wrong called AE → A-ASSOCIATE-RJ permanent / service-user / called-AE-not-recognized.
    wrong = raw.associate(orthanc_locked.ip, orthanc_locked.port, "PWRANDOM123")
    assert (wrong.kind, wrong.reject) == ("rj", (1, 1, 7))
    res = echo_and_count(orthanc_locked.ip, orthanc_locked.port, called="ORTHANC")
    assert res.established and res.echo_status == 0
    assert (res.count, res.final_status) == (fakedata.N_STUDIES, 0)


def test_orthanc_hidden_ae_servers_up(orthanc_hidden_ae):
    _listens_on_loopback_only(orthanc_hidden_ae)
    for called in ("PWRANDOM123", "ORTHANC"):
        ans = raw.associate(orthanc_hidden_ae.ip, orthanc_hidden_ae.port, called)
        assert (ans.kind, ans.reject) == ("rj", (1, 1, 7)), called
    res = echo_and_count(orthanc_hidden_ae.ip, orthanc_hidden_ae.port, called=orthanc_hidden_ae.aet)
    assert res.established and res.count == fakedata.N_STUDIES


def test_orthanc_tls_servers_up(orthanc_tls):
    _listens_on_loopback_only(orthanc_tls)
    material = orthanc_tls.tls_material
    # With a client certificate the whole thing works over TLS.
    res = echo_and_count(orthanc_tls.ip, orthanc_tls.port, called="ORTHANC", ssl_context=material.client_context())
    assert res.established and res.echo_status == 0
    assert res.count == fakedata.N_STUDIES


def test_orthanc_tls_without_client_cert_servers_up(orthanc_tls):
    material = orthanc_tls.tls_material
    # A plain A-ASSOCIATE-RQ to the TLS port: Orthanc (DCMTK/OpenSSL: "wrong version number")
    # resets the connection; no alert byte and no orderly close reach the client (30 of 30 runs).
    plain = raw.associate(orthanc_tls.ip, orthanc_tls.port, "ORTHANC")
    assert plain.kind == "reset", plain
    # TLS 1.3 without a client certificate: the client's handshake completes, and the server's
    # certificate_required alert (116) arrives on the first read.
    # (DICOM is client-first, so a read before sending anything sees only that alert.)
    ctx13 = material.client_context(with_client_cert=False)
    ctx13.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection((orthanc_tls.ip, orthanc_tls.port), timeout=10) as plain_sock:
        with ctx13.wrap_socket(plain_sock) as tls_sock:
            assert tls_sock.version() == "TLSv1.3"
            with pytest.raises(ssl.SSLError, match="(?i)certificate.required"):
                tls_sock.recv(16)
    # TLS 1.2 without a client certificate: the handshake itself fails (handshake_failure, 40).
    ctx12 = material.client_context(with_client_cert=False)
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError, match="(?i)handshake"):
        raw.associate(orthanc_tls.ip, orthanc_tls.port, "ORTHANC", ssl_context=ctx12)


# --- DCMTK -----------------------------------------------------------------------------------


def test_dcmqrscp_servers_up(dcmqrscp):
    _listens_on_loopback_only(dcmqrscp)
    res = echo_and_count(dcmqrscp.ip, dcmqrscp.port, called=dcmqrscp.ae_title)
    assert res.established and res.echo_status == 0
    assert (res.count, res.final_status) == (fakedata.N_STUDIES, 0)
    patients = echo_and_count(dcmqrscp.ip, dcmqrscp.port, called=dcmqrscp.ae_title, level="PATIENT")
    assert patients.count == fakedata.N_PATIENTS


def test_dcmqrscp_rejects_unknown_called_ae_servers_up(dcmqrscp):
    for called in ("PWRANDOM123", "DCMQRSCP", "ANY-SCP"):
        ans = raw.associate(dcmqrscp.ip, dcmqrscp.port, called)
        assert (ans.kind, ans.reject) == ("rj", (1, 1, 7)), called
    ans = raw.associate(dcmqrscp.ip, dcmqrscp.port, dcmqrscp.ae_title, contexts=ALL_CONTEXTS)
    assert ans.kind == "ac"
    assert ans.contexts[raw.RANDOM_SYNTAX] == 3 and ans.contexts[raw.WORKLIST_FIND] == 3
    assert all(ans.accepted(s) for s in (raw.VERIFICATION, raw.STUDY_FIND, raw.STUDY_MOVE, raw.STUDY_GET, raw.CT_STORAGE))
    assert ans.implementation_class_uid.startswith(DCMTK_UID_PREFIX)


def test_dcmqrscp_restricted_servers_up(dcmqrscp_restricted):
    server = dcmqrscp_restricted
    _listens_on_loopback_only(server)
    friend = server.peers[0].ae_title
    res = echo_and_count(server.ip, server.port, called=server.ae_title, calling=friend)
    assert res.established and res.count == fakedata.N_STUDIES
    # An unknown *calling* AE gets the same answer as an unknown *called* AE: RJ 1/1/7
    # (dcmqrscp's "BadAEService"), never 1/1/3.
    for called, calling in ((server.ae_title, "PWSTRANGER"), ("PWRANDOM123", "PWSTRANGER"), ("PWRANDOM123", friend)):
        ans = raw.associate(server.ip, server.port, called, calling=calling)
        assert (ans.kind, ans.reject) == ("rj", (1, 1, 7)), (called, calling)


def test_storescp_servers_up(storescp):
    _listens_on_loopback_only(storescp)
    res = echo_and_count(storescp.ip, storescp.port, called="PWRANDOM123", level=None)
    assert res.established and res.echo_status == 0
    ans = raw.associate(storescp.ip, storescp.port, "PWRANDOM123", contexts=ALL_CONTEXTS)
    assert ans.kind == "ac"
    # Storage and echo only: every Q/R context, worklist and the random syntax are refused (3).
    assert ans.contexts == {
        raw.VERIFICATION: 0,
        raw.RANDOM_SYNTAX: 3,
        raw.STUDY_FIND: 3,
        raw.STUDY_MOVE: 3,
        raw.STUDY_GET: 3,
        raw.CT_STORAGE: 0,
        raw.WORKLIST_FIND: 3,
    }


# --- pynetdicom ------------------------------------------------------------------------------


def test_pynetdicom_restricted_servers_up(pynetdicom_restricted):
    server = pynetdicom_restricted
    ans = raw.associate(server.ip, server.port, "PWRANDOM123", calling="PWSTRANGER")
    assert (ans.kind, ans.reject) == ("rj", (1, 1, 3))  # calling-AE-not-recognized
    res = echo_and_count(server.ip, server.port, calling=server.require_calling_aet[0])
    assert res.established and res.echo_status == 0 and res.count == fakedata.N_STUDIES


def test_pynetdicom_open_servers_up(pynetdicom_open):
    server = pynetdicom_open
    studies = echo_and_count(server.ip, server.port, called="PWRANDOM123")
    assert studies.established and studies.echo_status == 0
    assert (studies.count, studies.final_status) == (fakedata.N_STUDIES, 0)
    patients = echo_and_count(server.ip, server.port, level="PATIENT")
    assert patients.count == fakedata.N_PATIENTS
    ans = raw.associate(server.ip, server.port, "PWRANDOM123", contexts=ALL_CONTEXTS)
    assert ans.implementation_class_uid.startswith(PYNETDICOM_UID_PREFIX)
    assert ans.contexts[raw.RANDOM_SYNTAX] == 3 and ans.contexts[raw.CT_STORAGE] == 3


# --- all together ----------------------------------------------------------------------------


def test_all_servers_distinct_loopback_addresses_servers_up(all_servers, interop_network):
    import ipaddress

    net = ipaddress.ip_network(interop_network)
    ips = [s.ip for s in all_servers.values()]
    assert len(set(ips)) == len(ips)
    assert all(ipaddress.ip_address(ip) in net and ipaddress.ip_address(ip).is_loopback for ip in ips)


def test_loopback_guard_refuses_other_addresses_servers_up():
    import socket
    import sys

    # Raise the audit event by hand: if the guard were broken, nothing is sent anywhere.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(PermissionError, match="interop guard"):
            sys.audit("socket.connect", s, ("192.0.2.1", 104))
        with pytest.raises(PermissionError, match="interop guard"):
            sys.audit("socket.bind", s, ("0.0.0.0", 0))
        sys.audit("socket.connect", s, ("127.0.0.1", 104))  # loopback passes
