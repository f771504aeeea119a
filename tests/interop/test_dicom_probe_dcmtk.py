"""DicomProbe against DCMTK 3.6.7: dcmqrscp (a Q/R archive) and storescp (storage only).

Facts (test_servers_up.py): dcmqrscp answers only to the AE titles of its AETable, with RJ 1/1/7
for any other; with a restricted peer list it answers an unknown *calling* AE with the same
1/1/7 (never 1/1/3), so a prober cannot tell the two apart. dcmqrscp honours C-CANCEL. storescp
accepts any called AE, Verification and storage, and refuses every Q/R context.
"""

from __future__ import annotations

import pytest

import fakedata
from probeutil import describe

pytestmark = pytest.mark.interop


def test_dcmqrscp_with_unguessable_ae_is_rejected_low(run_probe, dcmqrscp):
    r = run_probe(dcmqrscp)
    d = r.dicom
    assert r.status == "rejected", describe(r)
    assert r.service == "dicom"
    assert d.association.accepted is False
    assert d.association.reject.reason == "called-ae-not-recognized"
    assert d.accepts_any_called_ae is False
    assert d.called_ae_found is None
    assert r.severity == "low"


def test_dcmqrscp_found_with_its_ae_in_the_guess_list(run_probe, dcmqrscp):
    r = run_probe(dcmqrscp, ae_guess=(dcmqrscp.ae_title,))
    d = r.dicom
    assert r.status == "success", describe(r)
    assert d.called_ae_found == dcmqrscp.ae_title
    assert d.association.accepted and d.association.called_ae == dcmqrscp.ae_title
    assert d.echo is True
    assert d.find.allowed is True
    assert d.find.studies == fakedata.N_STUDIES and d.find.patients == fakedata.N_PATIENTS, describe(r)
    assert d.store_accepted and d.move_accepted and d.get_accepted
    assert d.promiscuous is False
    assert d.association.implementation_version_name.startswith("OFFIS_DCMTK_")
    assert r.product is not None and r.product.name == "DCMTK", describe(r)
    assert r.severity == "critical"


def test_dcmqrscp_find_limit_cancels(run_probe, dcmqrscp):
    r = run_probe(dcmqrscp, ae_guess=(dcmqrscp.ae_title,), find_limit=2)
    d = r.dicom
    assert d.find.capped is True, describe(r)
    assert d.find.studies == 2
    # dcmqrscp honours C-CANCEL, so the association survives for the patient count and release.
    assert d.find.patients == 2, describe(r)
    assert r.severity == "critical"


def test_dcmqrscp_restricted_peers_hides_behind_called_ae_reject(run_probe, dcmqrscp_restricted):
    server = dcmqrscp_restricted
    # Even with the right called AE, our calling AE is not a configured peer: dcmqrscp says
    # called-ae-not-recognized (1/1/7), so nothing is found and nothing is exposed.
    r = run_probe(server, ae_guess=(server.ae_title,))
    d = r.dicom
    assert r.status == "rejected", describe(r)
    assert d.association.reject.reason == "called-ae-not-recognized"
    assert d.called_ae_found is None
    assert r.severity == "low"


def test_storescp_is_high(run_probe, storescp):
    r = run_probe(storescp)
    d = r.dicom
    assert r.status == "success", describe(r)
    assert d.association.accepted and d.accepts_any_called_ae is True
    assert d.echo is True
    assert d.store_accepted is True
    assert d.move_accepted is False and d.get_accepted is False and d.worklist_accepted is False
    assert not d.find.allowed  # no Q/R context accepted: nothing to ask
    assert d.find.studies is None and d.find.patients is None
    assert d.promiscuous is False
    assert r.product is not None and r.product.name == "DCMTK", describe(r)
    assert r.severity == "high"
