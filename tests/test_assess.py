"""Assessment is a pure function: each rule of the issue, and its boundary."""

from __future__ import annotations

import pytest

from pacswatch.assess import assess
from pacswatch.record import AssociationFacts, DicomFacts, Find, Record, Reject, TlsFacts
from pacswatch.status import Status


def dicom_record(*, accepted=True, status=Status.SUCCESS, **facts) -> Record:
    find = facts.pop("find", Find())
    reject = facts.pop("reject", None)
    return Record(ip="127.0.0.1", port=11112, status=status, service="dicom",
                  dicom=DicomFacts(association=AssociationFacts(accepted=accepted, reject=reject), find=find, **facts))


@pytest.mark.parametrize("studies, patients", [(1, None), (None, 1), (5, 2)])
def test_any_count_above_zero_is_critical(studies, patients):
    severity, reasons = assess(dicom_record(echo=True, find=Find(allowed=True, studies=studies, patients=patients)))
    assert severity == "critical"
    assert any("patient data is exposed" in r for r in reasons)


def test_capped_count_says_at_least():
    _, reasons = assess(dicom_record(find=Find(allowed=True, studies=1000, patients=1000, capped=True)))
    assert any("at least 1000 studies" in r for r in reasons)


def test_find_allowed_but_empty_is_high():
    severity, _ = assess(dicom_record(echo=True, find=Find(allowed=True, studies=0, patients=0)))
    assert severity == "high"


@pytest.mark.parametrize("flag", ["store_accepted", "move_accepted", "get_accepted"])
def test_storage_or_retrieve_contexts_are_high(flag):
    severity, reasons = assess(dicom_record(echo=True, find=Find(allowed=False, refusal="aborted"), **{flag: True}))
    assert severity == "high"
    assert any("not tried" in r for r in reasons)


def test_echo_only_is_medium():
    severity, reasons = assess(dicom_record(echo=True))
    assert severity == "medium"
    assert any("C-ECHO" in r for r in reasons)


def test_rejected_association_is_low():
    record = dicom_record(accepted=False, status=Status.REJECTED,
                          reject=Reject(result="rejected-permanent", source="service-user",
                                        reason="called-ae-not-recognized"))
    severity, reasons = assess(record)
    assert severity == "low"
    assert "called-ae-not-recognized" in reasons[0]


def test_client_certificate_demanded_is_low():
    record = Record(ip="127.0.0.1", port=2762, status=Status.REJECTED, service="dicom", transport="tls",
                    tls=TlsFacts(handshake=True, client_cert_required=True))
    assert assess(record)[0] == "low"


@pytest.mark.parametrize("status", [Status.CONNECTION_REFUSED, Status.IO_TIMEOUT, Status.PROTOCOL_ERROR])
def test_not_dicom_has_no_severity(status):
    assert assess(Record(ip="127.0.0.1", port=104, status=status)) == (None, [])


def test_promiscuous_server_is_flagged_in_reasons():
    _, reasons = assess(dicom_record(store_accepted=True, promiscuous=True))
    assert any("made-up SOP class" in r for r in reasons)


def test_expired_self_signed_tls_adds_reasons_not_severity():
    record = dicom_record(echo=True)
    record.tls = TlsFacts(handshake=True, version="TLSv1", expired=True, self_signed=True)
    severity, reasons = assess(record)
    assert severity == "medium"
    assert any("expired" in r for r in reasons) and any("TLSv1" in r for r in reasons)
