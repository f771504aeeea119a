"""DicomProbe against real Orthanc 1.10 servers holding the fake patients.

Facts the expectations rest on (checked in test_servers_up.py):
- Orthanc accepts any called AE unless DicomCheckCalledAet; then a wrong one gets RJ 1/1/7.
- It accepts Verification, Q/R FIND/MOVE/GET and storage contexts whatever it will allow later;
  it refuses worklist (no plugin) and a random 2.25 syntax (not promiscuous).
- DicomAlwaysAllowFind false (the default) → a FIND from an unknown caller is answered by an
  A-ABORT, not a status.
- Its DICOM side announces DCMTK's implementation class UID / version name.
"""

from __future__ import annotations

import pytest

import fakedata
from probeutil import describe

pytestmark = pytest.mark.interop


def test_open_orthanc_is_critical(run_probe, orthanc_open):
    r = run_probe(orthanc_open)
    d = r.dicom
    assert r.status == "success", describe(r)
    assert r.service == "dicom" and r.transport == "tcp"
    assert d.association.accepted
    assert d.accepts_any_called_ae is True
    assert d.called_ae_found is None
    assert d.association.called_ae != orthanc_open.aet  # the random one worked
    assert d.echo is True
    assert d.find.allowed is True
    assert d.find.studies == fakedata.N_STUDIES, describe(r)
    assert d.find.patients == fakedata.N_PATIENTS, describe(r)
    assert d.find.capped is False
    assert d.store_accepted and d.move_accepted and d.get_accepted
    assert d.worklist_accepted is False
    assert d.promiscuous is False
    assert d.association.implementation_class_uid.startswith("1.2.276.0.7230010.3.")
    assert r.severity == "critical"
    assert r.reasons
    # On a non-default port with a random called AE accepted, Orthanc's DICOM side looks exactly
    # like DCMTK (same UID and version name): either name is honest.
    assert r.product is not None and r.product.name in ("Orthanc", "DCMTK"), describe(r)


def test_open_orthanc_find_limit_caps_counts(run_probe, orthanc_open):
    r = run_probe(orthanc_open, find_limit=2)
    d = r.dicom
    assert d.find.allowed is True
    assert d.find.capped is True, describe(r)
    assert d.find.studies == 2, describe(r)
    assert d.find.patients is not None and d.find.patients <= 2, describe(r)
    assert r.severity == "critical"


def test_open_orthanc_no_find_option(run_probe, orthanc_open):
    r = run_probe(orthanc_open, find=False)
    d = r.dicom
    assert d.association.accepted and d.echo is True
    assert d.find.allowed is None and d.find.studies is None and d.find.patients is None
    # Storage and retrieve contexts accepted: high even without querying.
    assert r.severity == "high", describe(r)


def test_default_orthanc_refuses_find_with_abort(run_probe, orthanc_default):
    r = run_probe(orthanc_default)
    d = r.dicom
    assert r.status == "success", describe(r)
    assert d.association.accepted and d.accepts_any_called_ae is True
    assert d.echo is True
    # Orthanc's refusal of a FIND is an A-ABORT (docs/dicom-reference.md §3.1).
    assert d.find.allowed is False, describe(r)
    assert d.find.refusal and "abort" in d.find.refusal, describe(r)
    assert d.find.studies is None and d.find.patients is None
    assert d.store_accepted is True
    assert r.severity == "high", describe(r)


def test_locked_orthanc_found_by_ae_guess(run_probe, orthanc_locked):
    r = run_probe(orthanc_locked)
    d = r.dicom
    assert r.status == "success", describe(r)
    assert d.accepts_any_called_ae is False
    assert d.called_ae_found == "ORTHANC", describe(r)
    # The facts are those of the guessed association, which allows FIND.
    assert d.association.accepted and d.association.called_ae == "ORTHANC"
    assert d.association.reject is None
    assert d.echo is True
    assert d.find.studies == fakedata.N_STUDIES and d.find.patients == fakedata.N_PATIENTS, describe(r)
    assert r.severity == "critical"
    assert r.product is not None and r.product.name == "Orthanc", describe(r)


def test_locked_orthanc_without_guessing_is_rejected(run_probe, orthanc_locked):
    r = run_probe(orthanc_locked, ae_guess=())
    d = r.dicom
    assert r.status == "rejected", describe(r)
    assert d.association.accepted is False
    assert (d.association.reject.result, d.association.reject.source, d.association.reject.reason) == (
        "rejected-permanent", "service-user", "called-ae-not-recognized")
    assert d.accepts_any_called_ae is False
    assert d.called_ae_found is None
    assert d.find.studies is None
    assert r.severity == "low"


def test_orthanc_with_unguessable_ae_is_low(run_probe, orthanc_hidden_ae):
    r = run_probe(orthanc_hidden_ae)
    d = r.dicom
    assert r.status == "rejected", describe(r)
    assert d.association.reject.reason == "called-ae-not-recognized"
    assert d.called_ae_found is None
    assert d.find.studies is None and d.find.patients is None
    assert r.severity == "low"


def test_orthanc_with_known_ae_in_guess_list(run_probe, orthanc_hidden_ae):
    r = run_probe(orthanc_hidden_ae, ae_guess=("NOTTHISONE", orthanc_hidden_ae.aet))
    d = r.dicom
    assert r.status == "success", describe(r)
    assert d.called_ae_found == orthanc_hidden_ae.aet
    assert d.find.studies == fakedata.N_STUDIES
    assert r.severity == "critical"
