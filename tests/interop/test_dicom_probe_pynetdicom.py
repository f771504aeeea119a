"""DicomProbe against pynetdicom SCPs (Verification + Patient/Study Root FIND over the fakes).

Facts (test_servers_up.py): with `require_calling_aet` an unknown calling AE gets RJ 1/1/3
(calling-AE-not-recognized); the called AE is not checked.
"""

from __future__ import annotations

import pytest

import fakedata
from probeutil import describe

pytestmark = pytest.mark.interop


def test_pynetdicom_requiring_calling_ae_is_rejected_low(run_probe, pynetdicom_restricted):
    server = pynetdicom_restricted
    before = sum(e.startswith("rejected") for e in server.events)
    r = run_probe(server)
    d = r.dicom
    assert r.status == "rejected", describe(r)
    assert d.association.accepted is False
    assert d.association.reject.reason == "calling-ae-not-recognized"
    assert d.called_ae_found is None
    assert r.severity == "low"
    # A calling-AE refusal is not an invitation to guess (guessing the calling AE would be
    # credential guessing): exactly one association was attempted.
    after = sum(e.startswith("rejected") for e in server.events)
    assert after - before == 1, server.events


def test_pynetdicom_with_the_allowed_calling_ae(run_probe, pynetdicom_restricted):
    from pacswatch.identity import Identity

    server = pynetdicom_restricted
    r = run_probe(server, identity=Identity(calling_ae=server.require_calling_aet[0]))
    d = r.dicom
    assert r.status == "success", describe(r)
    assert d.association.accepted
    assert d.find.studies == fakedata.N_STUDIES and d.find.patients == fakedata.N_PATIENTS
    assert r.severity == "critical"


def test_open_pynetdicom_is_critical(run_probe, pynetdicom_open):
    r = run_probe(pynetdicom_open)
    d = r.dicom
    assert r.status == "success", describe(r)
    assert d.association.accepted and d.accepts_any_called_ae is True
    assert d.echo is True
    assert d.find.allowed is True
    assert d.find.studies == fakedata.N_STUDIES and d.find.patients == fakedata.N_PATIENTS, describe(r)
    assert d.store_accepted is False and d.move_accepted is False and d.get_accepted is False
    assert d.promiscuous is False
    assert d.association.implementation_class_uid.startswith("1.2.826.0.1.3680043.9.3811.")
    assert r.product is not None and r.product.name == "pynetdicom", describe(r)
    assert r.severity == "critical"


def test_open_pynetdicom_find_limit_cancels(run_probe, pynetdicom_open):
    r = run_probe(pynetdicom_open, find_limit=2)
    d = r.dicom
    assert d.find.capped is True, describe(r)
    assert d.find.studies == 2 and d.find.patients == 2, describe(r)
    # (Whether the SCP saw the C-CANCEL is a race with four matches: it has usually sent them
    # all before the cancel arrives. The next test gives it thousands.)


def test_the_limit_sends_a_c_cancel_that_the_scp_honours(run_probe, pynetdicom_many):
    server = pynetdicom_many
    r = run_probe(server, find_limit=5)
    d = r.dicom
    assert d.find.allowed is True and d.find.capped is True and d.find.studies == 5, describe(r)
    # The SCP stopped on our C-CANCEL (pynetdicom checks for it between matches) instead of
    # sending all 3,000, and the association still ended in an orderly release.
    assert "find cancelled" in server.events, server.events
    assert d.released is True, describe(r)
