"""DicomProbe against Orthanc with DICOM over TLS only (self-signed server certificate, client
certificate required, which is Orthanc's default with DicomTlsEnabled).

Facts (test_servers_up.py): a plain A-ASSOCIATE-RQ to that port gets a reset; over TLS 1.3 the
client's handshake completes and the certificate_required alert (116) comes on the first read;
over TLS 1.2 the handshake itself fails (handshake_failure). With a client certificate it is an
ordinary open Orthanc.
"""

from __future__ import annotations

import pytest

from probeutil import describe

pytestmark = pytest.mark.interop


def _assert_tls_locked(r) -> None:
    assert r.transport == "tls", describe(r)
    assert r.tls is not None, describe(r)
    # TLS 1.3: our side of the handshake completes before the server asks for the certificate.
    assert r.tls.handshake is True, describe(r)
    assert r.tls.client_cert_required is True, describe(r)
    assert r.tls.self_signed is True, describe(r)
    assert r.tls.version == "TLSv1.3", describe(r)
    assert r.severity == "low", describe(r)
    assert r.dicom is None or not r.dicom.association.accepted
    assert r.dicom is None or r.dicom.find.studies is None


def test_tls_orthanc_found_by_fallback(run_probe, orthanc_tls):
    # The port is not a TLS port: plain DICOM first, the reset leads to TLS.
    r = run_probe(orthanc_tls)
    _assert_tls_locked(r)


def test_tls_orthanc_on_a_tls_port(run_probe, orthanc_tls):
    r = run_probe(orthanc_tls, tls_ports=frozenset({orthanc_tls.port}))
    _assert_tls_locked(r)


def test_tls_orthanc_without_fallback_is_not_dicom_success(run_probe, orthanc_tls):
    r = run_probe(orthanc_tls, try_tls_fallback=False)
    assert r.transport == "tcp"
    assert r.status != "success", describe(r)
    assert r.tls is None
    assert r.dicom is None or not r.dicom.association.accepted
