"""Fake patients for the interop tests, made of strings nobody else would write.

Every identifying value below is invented and distinctive, so a test can plant these patients in
real servers, scan them, and grep everything pacswatch wrote for `LEAK_MARKERS` (docs/design.md: "No
patient data is kept"). UIDs are fixed (under 2.25, with a recognisable prefix) so the markers are
the same in every run and the servers' contents are reproducible.

3 patients, 4 studies (the first patient has two), 6 instances: Secondary Capture and CT, each
with a tiny 8x8 8-bit image so that servers that check pixel data accept them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

# A recognisable root for every fake UID: 2.25 followed by digits that spell nothing real.
_UID_ROOT = "2.25.7731000420417"


@dataclass(frozen=True)
class FakeStudy:
    uid: str
    accession: str
    description: str
    date: str
    study_id: str
    referring: str  # PN, "^"-separated
    modality: str
    sop_class: str
    instances: int


@dataclass(frozen=True)
class FakePatient:
    name: str  # PN, "^"-separated
    patient_id: str
    birth_date: str
    sex: str
    institution: str
    address: str
    studies: tuple[FakeStudy, ...]


PATIENTS: tuple[FakePatient, ...] = (
    FakePatient(
        name="Zzyzx^Quentavious",
        patient_id="PWLEAK-7731-ALPHA",
        birth_date="19230417",
        sex="M",
        institution="Glimmerfen Memorial Infirmary",
        address="17 Wobblethorpe Lane, Quillington",
        studies=(
            FakeStudy(
                uid=f"{_UID_ROOT}.1.1",
                accession="PWACC9081726",
                description="PWLEAK Xylophone Elbow Survey",
                date="20190311",
                study_id="PWS7731",
                referring="Drabblecott^Ignatius",
                modality="OT",
                sop_class=SECONDARY_CAPTURE,
                instances=2,
            ),
            FakeStudy(
                uid=f"{_UID_ROOT}.1.2",
                accession="PWACC5540013",
                description="PWLEAK Marmalade Knee Followup",
                date="20210922",
                study_id="PWS7732",
                referring="Drabblecott^Ignatius",
                modality="CT",
                sop_class=CT_IMAGE,
                instances=1,
            ),
        ),
    ),
    FakePatient(
        name="Vrillendorf^Ottoline",
        patient_id="PWLEAK-4096-BRAVO",
        birth_date="19311102",
        sex="F",
        institution="Glimmerfen Memorial Infirmary",
        address="3 Snorkelbury Crescent, Quillington",
        studies=(
            FakeStudy(
                uid=f"{_UID_ROOT}.2.1",
                accession="PWACC3141592",
                description="PWLEAK Periwinkle Thorax Scan",
                date="20200105",
                study_id="PWS4096",
                referring="Fennimore^Haxtable",
                modality="CT",
                sop_class=CT_IMAGE,
                instances=2,
            ),
        ),
    ),
    FakePatient(
        name="Quaxmire^Belphegora",
        patient_id="PWLEAK-2718-CHARLIE",
        birth_date="19470829",
        sex="O",
        institution="Saint Gribbleford Cottage Hospital",
        address="88 Umbershade Row, Dunplinket",
        studies=(
            FakeStudy(
                uid=f"{_UID_ROOT}.3.1",
                accession="PWACC2718281",
                description="PWLEAK Tangerine Wrist Review",
                date="20220630",
                study_id="PWS2718",
                referring="Fennimore^Haxtable",
                modality="OT",
                sop_class=SECONDARY_CAPTURE,
                instances=1,
            ),
        ),
    ),
)

N_PATIENTS = len(PATIENTS)
N_STUDIES = sum(len(p.studies) for p in PATIENTS)
N_SERIES = N_STUDIES  # one series per study
N_INSTANCES = sum(s.instances for p in PATIENTS for s in p.studies)


def _series_uid(study: FakeStudy) -> str:
    return f"{study.uid}.1"


def _instance_uid(study: FakeStudy, n: int) -> str:
    return f"{study.uid}.1.{n}"


def _pn_variants(pn: str) -> list[str]:
    family, given = pn.split("^")
    return [pn, f"{family} {given}", f"{given} {family}", f"{family}, {given}", family, given]


def _date_variants(da: str) -> list[str]:
    y, m, d = da[:4], da[4:6], da[6:]
    return [da, f"{y}-{m}-{d}", f"{y}.{m}.{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}"]


def _markers() -> tuple[str, ...]:
    out: list[str] = []
    for p in PATIENTS:
        out += _pn_variants(p.name)
        out += [p.patient_id, p.patient_id.replace("-", ""), p.institution, p.address]
        out += _date_variants(p.birth_date)
        for s in p.studies:
            out += [s.uid, _series_uid(s), s.accession, s.description, s.study_id]
            out += [_instance_uid(s, n) for n in range(1, s.instances + 1)]
            out += _pn_variants(s.referring)
    # Study dates are not distinctive enough to be leak markers on their own (a record's
    # timestamp could contain one); birth dates are from the 1920s-40s and are.
    out += ["PWLEAK", _UID_ROOT]
    seen: dict[str, None] = {}
    for m in out:
        seen.setdefault(m, None)
    return tuple(seen)


LEAK_MARKERS: tuple[str, ...] = _markers()
"""Every identifying string planted in the fake patients, plus formatted variants (PN with "^",
with a space, reversed; dates in common layouts). Search case-insensitively."""

UID_ROOT = _UID_ROOT


def make_datasets() -> list[Dataset]:
    """One pydicom Dataset (with file meta) per fake instance."""
    out: list[Dataset] = []
    for p in PATIENTS:
        for s in p.studies:
            for n in range(1, s.instances + 1):
                out.append(_instance(p, s, n))
    return out


def _instance(p: FakePatient, s: FakeStudy, n: int) -> Dataset:
    sop_uid = _instance_uid(s, n)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = s.sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = "2.25.7731000420417.99"
    meta.ImplementationVersionName = "PW_FAKEDATA"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = s.sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = s.date
    ds.SeriesDate = s.date
    ds.StudyTime = "101500"
    ds.AccessionNumber = s.accession
    ds.Modality = s.modality
    if s.sop_class == SECONDARY_CAPTURE:
        ds.ConversionType = "WSD"
    ds.InstitutionName = p.institution
    ds.InstitutionAddress = p.address
    ds.ReferringPhysicianName = s.referring
    ds.StudyDescription = s.description
    ds.SeriesDescription = f"{s.description} series"
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    ds.StudyInstanceUID = s.uid
    ds.SeriesInstanceUID = _series_uid(s)
    ds.StudyID = s.study_id
    ds.SeriesNumber = 1
    ds.InstanceNumber = n
    if s.sop_class == CT_IMAGE:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.KVP = 120
        ds.ImagePositionPatient = [0, 0, n]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1, 1]
        ds.SliceThickness = 1
        ds.FrameOfReferenceUID = f"{s.uid}.9"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes((i * 4) % 256 for i in range(64))
    return ds


def write_files(directory: Path) -> list[Path]:
    """Write every fake instance as a DICOM Part 10 file into `directory`; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for ds in make_datasets():
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def find_markers(data: str | bytes) -> list[str]:
    """The LEAK_MARKERS found in `data`, case-insensitively (bytes are searched as bytes)."""
    if isinstance(data, str):
        hay = data.lower()
        return [m for m in LEAK_MARKERS if m.lower() in hay]
    hay_b = data.lower()
    return [m for m in LEAK_MARKERS if m.lower().encode() in hay_b]
