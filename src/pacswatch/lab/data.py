"""The lab archive: obviously synthetic patients and studies, and C-FIND matching over them.

The values are fake but the lab treats them as patient data: a test plants them in the lab's
servers, scans, then searches every output for `planted_strings()` (docs/design.md, first rule).
Everything is derived from fixed seeds, so two labs hold the same archive and counts are known.
"""

from __future__ import annotations

import fnmatch
import uuid
from dataclasses import dataclass

# Default archive size; tests and the manifest rely on these numbers.
DEFAULT_PATIENTS = 5
DEFAULT_STUDIES = 12

_NAMES = (
    "ALPHA", "BRAVO", "CHARLIE", "DELTA", "ECHO", "FOXTROT", "GOLF", "HOTEL", "INDIA", "JULIETT",
    "KILO", "LIMA", "MIKE", "NOVEMBER", "OSCAR", "PAPA", "QUEBEC", "ROMEO", "SIERRA", "TANGO",
)
_MODALITIES = ("CT", "MR", "CT", "OT")
# A fixed namespace so the lab's UIDs are stable and recognisably ours (2.25 = UUID-derived, PS3.5 B.2).
_NAMESPACE = uuid.UUID("7b0c2b4e-2f4e-4f55-9d3e-6c61622d7061")


def _uid(kind: str, n: int) -> str:
    return f"2.25.{uuid.uuid5(_NAMESPACE, f'{kind}-{n}').int}"


@dataclass(frozen=True)
class Study:
    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    modality: str
    series_instance_uid: str


@dataclass(frozen=True)
class Archive:
    studies: tuple[Study, ...]

    @property
    def patient_count(self) -> int:
        return len({s.patient_id for s in self.studies})

    @property
    def study_count(self) -> int:
        return len(self.studies)

    def patients(self) -> list[Study]:
        """One representative study per patient, in patient order (patient-level answers)."""
        seen: dict[str, Study] = {}
        for study in self.studies:
            seen.setdefault(study.patient_id, study)
        return list(seen.values())


def make_archive(patients: int = DEFAULT_PATIENTS, studies: int = DEFAULT_STUDIES) -> Archive:
    """`studies` studies spread round-robin over `patients` patients (every patient has one)."""
    if patients < 0 or studies < 0 or (studies and not patients) or (patients > studies):
        raise ValueError("need 0 <= patients <= studies, and patients > 0 when studies > 0")
    out = []
    for n in range(studies):
        p = n % patients
        name = _NAMES[p % len(_NAMES)] + ("" if p < len(_NAMES) else str(p // len(_NAMES)))
        out.append(Study(
            patient_id=f"LABPID{p + 1:05d}",
            patient_name=f"LAB^{name}",
            patient_birth_date=f"19{10 + p % 80:02d}0{1 + p % 9}1{p % 9}",
            patient_sex="FMO"[p % 3],
            study_instance_uid=_uid("study", n),
            study_date=f"2020{1 + n % 12:02d}{1 + n % 28:02d}",
            study_time=f"{8 + n % 10:02d}{n % 60:02d}00",
            accession_number=f"LABACC{n + 1:06d}",
            study_id=f"LABSTUDY{n + 1}",
            study_description=f"LAB SYNTHETIC STUDY {n + 1}",
            modality=_MODALITIES[n % len(_MODALITIES)],
            series_instance_uid=_uid("series", n),
        ))
    return Archive(tuple(out))


def planted_strings(archive: Archive | None = None) -> list[str]:
    """Every identifying value the lab serves: none may appear in a scanner's output."""
    archive = archive or make_archive()
    values: set[str] = set()
    for s in archive.studies:
        values.update((s.patient_id, s.patient_name, s.study_instance_uid, s.accession_number,
                       s.series_instance_uid, s.study_description))
    return sorted(values)


# DICOM keyword -> Study attribute. Tags are looked up by keyword through pydicom at answer time.
ATTRIBUTES = {
    "PatientID": "patient_id",
    "PatientName": "patient_name",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
    "StudyInstanceUID": "study_instance_uid",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "AccessionNumber": "accession_number",
    "StudyID": "study_id",
    "StudyDescription": "study_description",
    "ModalitiesInStudy": "modality",
    "Modality": "modality",
    "SeriesInstanceUID": "series_instance_uid",
}
_UID_KEYS = {"StudyInstanceUID", "SeriesInstanceUID"}
_DATE_KEYS = {"PatientBirthDate", "StudyDate"}
LEVELS = ("PATIENT", "STUDY", "SERIES")


def matches(study: Study, keys: dict[str, str]) -> bool:
    """PS3.4 C.2.2.2 matching, the subset a lab needs: empty = universal, UID lists,
    wildcards (* ?), date ranges, otherwise single value. Unknown keys match anything."""
    for keyword, wanted in keys.items():
        attr = ATTRIBUTES.get(keyword)
        if attr is None or wanted in ("", "*"):
            continue
        have = getattr(study, attr)
        if keyword in _UID_KEYS:
            if have not in wanted.split("\\"):
                return False
        elif keyword in _DATE_KEYS and "-" in wanted:
            low, _, high = wanted.partition("-")
            if (low and have < low) or (high and have > high):
                return False
        elif "*" in wanted or "?" in wanted:
            if not fnmatch.fnmatchcase(have.upper(), wanted.upper().replace("[", "[[]")):
                return False
        elif have != wanted:
            return False
    return True


def query(archive: Archive, level: str, keys: dict[str, str]) -> list[Study]:
    """The matches for one C-FIND at `level` (one series per study, so SERIES = STUDY count)."""
    level = level.strip().upper()
    if level not in LEVELS:
        return []
    if level == "PATIENT":
        # A patient matches when any of its studies does; answer with its first study's values.
        hits = {s.patient_id for s in archive.studies if matches(s, keys)}
        return [s for s in archive.patients() if s.patient_id in hits]
    return [s for s in archive.studies if matches(s, keys)]
