"""identifiers.off_level: a C-FIND response's identifier read for its level and unique key only.
Identifiers are encoded by pydicom (an independent encoder), Implicit VR Little Endian."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.dsutils import encode

from pacswatch.dicom.identifiers import level_and_keys, off_level, study_query


def ident(undefined_sequence: bool = False, **keys) -> bytes:
    ds = Dataset()
    for k, v in keys.items():
        setattr(ds, k, v)
    if undefined_sequence:
        item = Dataset()
        item.ReferencedSOPInstanceUID = "1.2.3.4"
        ds.ReferencedStudySequence = Sequence([item])
        ds["ReferencedStudySequence"].is_undefined_length = True
        ds.ReferencedStudySequence[0].is_undefined_length_sequence_item = True
    raw = encode(ds, True, True)
    assert raw is not None
    return raw


def test_an_answer_at_the_level_asked_is_not_counted():
    assert not off_level(ident(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.3"), "STUDY")
    assert not off_level(ident(QueryRetrieveLevel="PATIENT", PatientID="X1"), "PATIENT")


def test_another_level_or_a_missing_key_is_counted():
    assert off_level(ident(QueryRetrieveLevel="PATIENT", PatientID="X1", StudyInstanceUID="1.2.3"), "STUDY")
    assert off_level(ident(QueryRetrieveLevel="STUDY", PatientID="X1"), "STUDY")
    assert off_level(ident(QueryRetrieveLevel="STUDY", StudyInstanceUID=""), "STUDY")  # empty is absent


def test_no_level_element_is_judged_on_the_key():
    assert not off_level(ident(StudyInstanceUID="1.2.3"), "STUDY")
    assert off_level(ident(PatientID="X1"), "STUDY")


def test_undefined_length_sequences_are_skipped():
    raw = ident(True, QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.3")
    assert b"\xff\xff\xff\xff" in raw  # really undefined lengths
    assert level_and_keys(raw)[0] == "STUDY" and not off_level(raw, "STUDY")


def test_unreadable_identifiers_are_not_counted():
    raw = ident(QueryRetrieveLevel="PATIENT", PatientID="X1")
    assert off_level(raw, "STUDY")
    assert not off_level(raw[:-3], "STUDY")  # truncated
    assert not off_level(b"\xfe\xff\x00\xe0\xff\xff\xff\xff" * 20, "STUDY")  # nesting without end


def test_our_own_query_reads_back():
    assert level_and_keys(study_query("")) == ("STUDY", frozenset())
