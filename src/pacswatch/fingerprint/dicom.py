"""DICOM fingerprints: implementation class UID prefixes and version names → product.

Only confirmed prefixes are listed (docs/dicom-reference.md §4.1); an unknown UID is reported
verbatim on the record and gives no product. Orthanc uses DCMTK's network stack and keeps its
UID, so it is told apart by its default AE title or port (a weaker hint, said in the reasons).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pacswatch.record import DicomFacts, Product
from pacswatch.text import version_or_none


@dataclass(frozen=True)
class DicomFingerprint:
    uid_prefix: str
    product: str
    # Regex on the implementation version name whose groups are the version's parts.
    version_pattern: str | None = None
    # Regex on the UID's remainder after the prefix, when the version lives there.
    uid_version_pattern: str | None = None


TABLE: tuple[DicomFingerprint, ...] = (
    DicomFingerprint("1.2.276.0.7230010.3", "DCMTK", r"^OFFIS_DCMTK_(\d)(\d)(\d)", r"^\.0\.(\d+\.\d+\.\d+)"),
    DicomFingerprint("1.2.826.0.1.3680043.9.3811", "pynetdicom", r"^PYNETDICOM_(\d)(\d)(\d)", r"^\.(\d+\.\d+\.\d+)"),
    DicomFingerprint("1.2.40.0.13.1.3", "dcm4che", r"^dcm4che-(\d+)\.(\d+)\.(\d+)"),
    DicomFingerprint("1.2.40.0.13.1.1", "dcm4che", r"^dcm4che-(\d+)\.(\d+)"),
    DicomFingerprint("1.2.826.0.1.3680043.2.135.1066", "Conquest", r"^(\d+)\.(\d+)\.(\d+\w*)"),
    DicomFingerprint("1.3.6.1.4.1.30071.8", "fo-dicom", r"^fo-dicom (\d+)\.(\d+)\.(\d+)"),
    DicomFingerprint("1.3.6.1.4.1.25403.1.1.1", "ClearCanvas"),
    DicomFingerprint("1.2.826.0.1.3680043.2.1143", "GDCM", r"^GDCM (\d+)\.(\d+)\.(\d+)"),
    DicomFingerprint("1.3.46.670589", "Philips"),
    DicomFingerprint("1.2.840.113619", "GE Healthcare"),
    DicomFingerprint("1.3.12.2.1107.5", "Siemens"),
    DicomFingerprint("1.2.124.113532", "Agfa"),
)

# Orthanc runs on DCMTK's stack: its defaults tell it apart.
ORTHANC_AE = "ORTHANC"
ORTHANC_PORT = 4242


def _match(uid: str, fp: DicomFingerprint) -> bool:
    return uid == fp.uid_prefix or uid.startswith(fp.uid_prefix + ".")


def _version(fp: DicomFingerprint, uid: str, version_name: str | None) -> str | None:
    # Both come from the peer: what the patterns pick out is kept only if shaped like a version.
    if fp.version_pattern and version_name:
        m = re.match(fp.version_pattern, version_name)
        if m:
            return version_or_none(".".join(m.groups()))
    if fp.uid_version_pattern:
        m = re.match(fp.uid_version_pattern, uid[len(fp.uid_prefix):])
        if m:
            return version_or_none(m.group(1))
    return None


def identify(facts: DicomFacts | None, port: int) -> Product | None:
    if facts is None:
        return None
    uid = facts.association.implementation_class_uid
    name = facts.association.implementation_version_name
    if not uid:
        return None
    for fp in TABLE:
        if _match(uid, fp):
            version = _version(fp, uid, name)
            if fp.product == "DCMTK" and (facts.called_ae_found == ORTHANC_AE or port == ORTHANC_PORT):
                # The DCMTK version is the library's, not Orthanc's.
                return Product(name="Orthanc", version=None)
            return Product(name=fp.product, version=version)
    return None
