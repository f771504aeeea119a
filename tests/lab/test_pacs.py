"""The realistic lab servers, checked with a pynetdicom requestor."""

import socket
import ssl
import threading

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom import sop_class as sc

from pacswatch.lab.data import DEFAULT_PATIENTS, DEFAULT_STUDIES, make_archive, planted_strings
from pacswatch.lab.pacs import BIG_ARCHIVE, PacsServer

CONTROL = "2.25.987654321987654321"
ALL_CONTEXTS = [
    sc.Verification, sc.PatientRootQueryRetrieveInformationModelFind, sc.StudyRootQueryRetrieveInformationModelFind,
    sc.PatientRootQueryRetrieveInformationModelMove, sc.StudyRootQueryRetrieveInformationModelMove,
    sc.PatientRootQueryRetrieveInformationModelGet, sc.StudyRootQueryRetrieveInformationModelGet,
    sc.CTImageStorage, sc.MRImageStorage, sc.SecondaryCaptureImageStorage, CONTROL,
]


def associate(endpoint, called="RANDOMCALLED", calling="PACSWATCH", contexts=ALL_CONTEXTS, tls_args=None):
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    for uid in contexts:
        ae.add_requested_context(uid)
    return ae.associate(endpoint.ip, endpoint.port, ae_title=called, tls_args=tls_args)


def accepted_syntaxes(assoc) -> set[str]:
    return {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}


def study_query(uid=""):
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    return ds


def patient_query():
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    ds.PatientID = ""
    return ds


def count(assoc, query, model) -> tuple[int, int]:
    responses = list(assoc.send_c_find(query, model))
    pending = [r for r in responses if r[0] and r[0].Status in (0xFF00, 0xFF01)]
    return len(pending), responses[-1][0].Status


def test_open_archive_accepts_anyone_and_answers_with_the_archive(lab):
    assoc = associate(lab.endpoint("open-archive"))
    try:
        assert assoc.is_established
        accepted = accepted_syntaxes(assoc)
        assert CONTROL not in accepted
        assert accepted == {str(u) for u in ALL_CONTEXTS if u != CONTROL}
        assert assoc.send_c_echo().Status == 0
        assert count(assoc, study_query(), sc.StudyRootQueryRetrieveInformationModelFind) == (DEFAULT_STUDIES, 0)
        assert count(assoc, patient_query(), sc.PatientRootQueryRetrieveInformationModelFind) == (DEFAULT_PATIENTS, 0)
        # A random StudyInstanceUID matches nothing: permission without data.
        assert count(assoc, study_query("2.25.42"), sc.StudyRootQueryRetrieveInformationModelFind) == (0, 0)
        # It leaks PatientName even when only the unique key was asked for.
        _, identifier = next(iter(assoc.send_c_find(study_query(), sc.StudyRootQueryRetrieveInformationModelFind)))
        assert str(identifier.PatientName).startswith("LAB^")
        assert str(identifier.PatientName) in planted_strings()
    finally:
        assoc.release()


def test_open_archive_matches_a_single_study(lab):
    study = make_archive().studies[3]
    assoc = associate(lab.endpoint("open-archive"))
    try:
        responses = list(assoc.send_c_find(study_query(study.study_instance_uid),
                                           sc.StudyRootQueryRetrieveInformationModelFind))
        assert [r[0].Status for r in responses] == [0xFF00, 0x0000]
        assert "AccessionNumber" not in responses[0][1]  # not asked, not given (unlike the name)
        assert responses[0][1].StudyInstanceUID == study.study_instance_uid
    finally:
        assoc.release()


def test_open_archive_refuses_move_get_and_store_per_request(lab):
    assoc = associate(lab.endpoint("open-archive"))
    try:
        query = study_query(make_archive().studies[0].study_instance_uid)
        move = list(assoc.send_c_move(query, "NOWHERE", sc.StudyRootQueryRetrieveInformationModelMove))
        assert move[-1][0].Status == 0xA801  # move destination unknown
        store = Dataset()
        store.SOPClassUID = sc.SecondaryCaptureImageStorage
        store.SOPInstanceUID = "2.25.1"
        store.file_meta = Dataset()
        store.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
        assert assoc.send_c_store(store).Status == 0xA700
    finally:
        assoc.release()


def test_find_honours_c_cancel():
    server = PacsServer("open-archive", "127.43.255.10", 0, pending_delay=0.1)
    port = server.start()
    try:
        ae = AE(ae_title="PACSWATCH")
        ae.add_requested_context(sc.StudyRootQueryRetrieveInformationModelFind)
        assoc = ae.associate("127.43.255.10", port)
        statuses = []
        for status, _ in assoc.send_c_find(study_query(), sc.StudyRootQueryRetrieveInformationModelFind, msg_id=7):
            statuses.append(status.Status)
            if len(statuses) == 2:
                cx = assoc.accepted_contexts[0].context_id
                assoc.send_c_cancel(7, cx)
        assert statuses[-1] == 0xFE00
        assert statuses.count(0xFF00) < DEFAULT_STUDIES
        assoc.release()
    finally:
        server.stop()


@pytest.mark.parametrize("called, ok", [("RANDOMCALLED", False), ("LABPACS", True)])
def test_ae_restricted_checks_the_called_ae(lab, called, ok):
    assoc = associate(lab.endpoint("ae-restricted"), called=called)
    if ok:
        assert assoc.is_established
        assoc.release()
    else:
        assert assoc.is_rejected
        rj = assoc.acceptor.primitive
        assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x07)


@pytest.mark.parametrize("called, ok", [("RANDOMCALLED", False), ("ANY-SCP", True)])
def test_ae_guessable_accepts_its_default_title(lab, called, ok):
    assoc = associate(lab.endpoint("ae-guessable"), called=called)
    assert assoc.is_established is ok
    if ok:
        assoc.release()


@pytest.mark.parametrize("calling, ok", [("PACSWATCH", False), ("LABCLIENT", True)])
def test_calling_ae_restricted_checks_the_calling_ae(lab, calling, ok):
    assoc = associate(lab.endpoint("calling-ae-restricted"), calling=calling)
    if ok:
        assert assoc.is_established
        assoc.release()
    else:
        rj = assoc.acceptor.primitive
        assert assoc.is_rejected and (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)


@pytest.mark.parametrize("name, syntaxes", [
    ("echo-only", {sc.Verification}),
    ("store-only", {sc.CTImageStorage, sc.MRImageStorage, sc.SecondaryCaptureImageStorage}),
    ("find-empty", {sc.Verification, sc.PatientRootQueryRetrieveInformationModelFind,
                    sc.StudyRootQueryRetrieveInformationModelFind}),
])
def test_restricted_capabilities(lab, name, syntaxes):
    assoc = associate(lab.endpoint(name))
    try:
        assert accepted_syntaxes(assoc) == {str(s) for s in syntaxes}
    finally:
        assoc.release()


def test_find_empty_has_nothing(lab):
    assoc = associate(lab.endpoint("find-empty"))
    try:
        assert assoc.send_c_echo().Status == 0
        assert count(assoc, study_query(), sc.StudyRootQueryRetrieveInformationModelFind) == (0, 0)
        assert count(assoc, patient_query(), sc.PatientRootQueryRetrieveInformationModelFind) == (0, 0)
    finally:
        assoc.release()


def test_big_archive_counts(lab):
    assoc = associate(lab.endpoint("big-archive"))
    try:
        assert count(assoc, patient_query(), sc.PatientRootQueryRetrieveInformationModelFind) == (BIG_ARCHIVE[0], 0)
        assert count(assoc, study_query(), sc.StudyRootQueryRetrieveInformationModelFind) == (BIG_ARCHIVE[1], 0)
    finally:
        assoc.release()


def test_tls_open_is_the_archive_inside_tls(lab):
    ctx = lab.certificates.client_context(with_client_cert=False)
    assoc = associate(lab.endpoint("tls-open"), tls_args=(ctx, None))
    try:
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assert count(assoc, study_query(), sc.StudyRootQueryRetrieveInformationModelFind) == (DEFAULT_STUDIES, 0)
    finally:
        assoc.release()


def test_tls_certificate_is_self_signed(lab):
    endpoint = lab.endpoint("tls-open")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(endpoint.address, timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        assert cert.issuer == cert.subject


def test_plain_dicom_to_a_tls_port_fails(lab):
    assoc = associate(lab.endpoint("tls-open"))
    assert not assoc.is_established


@pytest.mark.parametrize("with_cert", [False, True])
def test_tls_client_cert_demands_a_certificate(lab, with_cert):
    ctx = lab.certificates.client_context(with_client_cert=with_cert)
    assoc = associate(lab.endpoint("tls-client-cert"), tls_args=(ctx, None))
    if with_cert:
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
    else:
        assert not assoc.is_established


def test_a_silent_tls_client_does_not_stall_the_server(lab):
    endpoint = lab.endpoint("tls-open")
    with socket.create_connection(endpoint.address, timeout=5):  # says nothing
        ctx = lab.certificates.client_context(with_client_cert=False)
        assoc = associate(endpoint, contexts=[sc.Verification], tls_args=(ctx, None))
        assert assoc.is_established
        assoc.release()


def test_lab_pynetdicom_logs_are_quiet(lab, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    assoc = associate(lab.endpoint("open-archive"))
    list(assoc.send_c_find(study_query(), sc.StudyRootQueryRetrieveInformationModelFind))
    assoc.release()
    lab_threads = {t.name for t in threading.enumerate() if t.name.startswith("pacswatch-lab")}
    assert not any(r.threadName in lab_threads for r in caplog.records)
    assert not any("LAB^" in r.getMessage() and "Response" in r.getMessage() for r in caplog.records)
