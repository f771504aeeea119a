from __future__ import annotations

import pytest

from pacswatch.fingerprint.dicom import identify
from pacswatch.record import AssociationFacts, DicomFacts


def facts(uid, name=None, found=None):
    return DicomFacts(association=AssociationFacts(accepted=True, implementation_class_uid=uid,
                                              implementation_version_name=name), called_ae_found=found)


@pytest.mark.parametrize("uid, name, port, product, version", [
    ("1.2.276.0.7230010.3.0.3.6.7", "OFFIS_DCMTK_367", 11112, "DCMTK", "3.6.7"),
    ("1.2.276.0.7230010.3.0.3.6.7", "OFFIS_DCMTK_367", 4242, "Orthanc", None),
    ("1.2.826.0.1.3680043.9.3811.3.0.4", "PYNETDICOM_304", 11112, "pynetdicom", "3.0.4"),
    ("1.2.40.0.13.1.3", "dcm4che-5.31.0", 11112, "dcm4che", "5.31.0"),
    ("1.3.6.1.4.1.30071.8", "fo-dicom 4.0.8", 104, "fo-dicom", "4.0.8"),
])
def test_known_stacks(uid, name, port, product, version):
    result = identify(facts(uid, name), port)
    assert result is not None and (result.name, result.version) == (product, version)


def test_orthanc_told_apart_by_default_ae_found():
    assert identify(facts("1.2.276.0.7230010.3.0.3.6.7", "OFFIS_DCMTK_367", found="ORTHANC"), 11112).name == "Orthanc"


def test_unknown_uid_gives_no_product_and_prefix_must_end_at_a_dot():
    assert identify(facts("1.2.3.4.5", "SOMETHING"), 104) is None
    assert identify(facts("1.2.40.0.13.1.30", "x"), 104) is None  # not dcm4che's 1.2.40.0.13.1.3
