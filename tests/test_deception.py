"""The deception signals (deception.py), one by one, on records built from the facts the research
found in each honeypot's public code; and the verdict arithmetic, the override and the floor."""

from __future__ import annotations

import pytest

from pacswatch.assess import assess
from pacswatch.deception import BY_NAME, KNOWN_HONEYPOTS, REPORT_FLOOR, RULES, effective, is_trap, judge
from pacswatch.record import (
    AssociationFacts,
    Behaviour,
    DicomFacts,
    Find,
    HttpFacts,
    RandomPorts,
    Record,
)

STORAGE = ["ct-image-storage", "mr-image-storage", "secondary-capture-storage"]


def dicom(uid="1.2.276.0.7230010.3.0.3.6.7", name="OFFIS_DCMTK_367", pdu=16384, any_ae=True, promiscuous=False,
          contexts=("verification", "study-root-find", *STORAGE), find=None, store=True, echo=True) -> Record:
    return Record(ip="127.64.0.1", port=104, status="success", service="dicom", dicom=DicomFacts(
        association=AssociationFacts(accepted=True, implementation_class_uid=uid, implementation_version_name=name,
                                     max_pdu_length=pdu, accepted_contexts=list(contexts)),
        accepts_any_called_ae=any_ae, promiscuous=promiscuous, echo=echo, store_accepted=store,
        find=find or Find(allowed=True, studies=12, patients=5, random_matches=0)))


def names(record: Record) -> list[str]:
    d = judge(record)
    return [] if d is None else [s.name for s in d.signals]


def test_a_plain_open_dcmtk_archive_raises_no_signal():
    record = dicom()
    assert judge(record) is None
    assess(record)
    assert record.deception is None  # assess judges too, and adds nothing to an ordinary record


@pytest.mark.parametrize("peer", KNOWN_HONEYPOTS, ids=lambda p: p.software)
def test_each_known_honeypot_identity(peer):
    d = judge(dicom(uid=peer.uid, name=peer.version_name))
    assert d is not None and d.verdict == "honeypot" and d.confidence >= 0.9
    assert d.signals[0].name == "honeypot-identity" and "DICOMHawk" in d.signals[0].source


def test_the_same_uid_with_another_version_name_is_no_identity():
    assert "honeypot-identity" not in names(dicom(uid="1.2.826.0.1.3680043.9.3811.2.0.1", name="PYNETDICOM_201"))


def test_old_dicomhawk_poses_as_dcmtk_with_pynetdicom_pdu():
    # dicom_application.py: pynetdicom with DCMTK 3.6.2's UID and name, pynetdicom's 16382-byte PDU.
    assert names(dicom(uid="1.2.276.0.7230010.3.0.3.6.2", name="OFFIS_DCMTK_362", pdu=16382)) == \
        ["dcmtk-uid-pynetdicom-pdu"]
    assert names(dicom(uid="1.2.276.0.7230010.3.0.3.6.2", name="OFFIS_DCMTK_362", pdu=16384)) == []


def test_dicompot_no_uid_and_accepts_everything():
    # go-netdicom's A-ASSOCIATE-AC: no implementation UID; every context accepted, any AE.
    d = judge(dicom(uid=None, name=None, pdu=4194304, promiscuous=True, contexts=("verification", *STORAGE, "control")))
    assert d is not None and d.verdict == "honeypot"
    assert [s.name for s in d.signals] == ["no-implementation-uid", "accepts-everything"]
    assert d.confidence == pytest.approx(1 - 0.65 * 0.5, abs=0.01)


def test_accepts_everything_needs_all_three():
    assert "accepts-everything" not in names(dicom(promiscuous=True, any_ae=False, contexts=STORAGE))
    assert "accepts-everything" not in names(dicom(promiscuous=True, contexts=STORAGE[:2]))


def test_canned_find_and_same_count():
    assert names(dicom(find=Find(allowed=True, studies=7, patients=7, random_matches=7))) == \
        ["canned-find", "same-count-every-level"]
    # One study per patient alone is common: a weak sign, below the reporting floor.
    d = judge(dicom(find=Find(allowed=True, studies=3, patients=3, random_matches=0)))
    assert d is not None and d.verdict is None and d.confidence < REPORT_FLOOR


def test_find_answers_at_another_level():
    d = judge(dicom(find=Find(allowed=True, studies=12, patients=5, random_matches=0, off_level_identifiers=12)))
    assert d is not None and [s.name for s in d.signals] == ["off-level-find"]
    # Alone it names a verdict but stays below the default notify threshold: it may be a bug.
    assert d.verdict == "honeypot" and not is_trap(d.verdict, d.confidence, None, 0.7)
    assert names(dicom(find=Find(allowed=True, studies=12, patients=5, random_matches=0,
                                 off_level_identifiers=0))) == []


def test_behaviour_signals():
    base = Record(ip="127.64.0.2", port=104, status="io-timeout")
    assert judge(base.model_copy(update={"behaviour": Behaviour(silent=True, held_open=True)})).verdict == "tarpit"
    assert judge(base.model_copy(update={"behaviour": Behaviour(dripped=True)})).verdict == "tarpit"
    closed = Record(ip="127.64.0.2", port=104, status="protocol-error", behaviour=Behaviour(silent=True, held_open=False))
    assert judge(closed).verdict is None  # 'tcpwrapped' alone is common
    ports = RandomPorts(tried=[50001, 50002, 50003, 50004], open=[50001, 50002, 50003])
    everywhere = closed.model_copy(update={"behaviour": Behaviour(silent=True, held_open=False, random_ports=ports)})
    assert judge(everywhere).verdict == "accepts-all"
    few = RandomPorts(tried=[50001, 50002, 50003, 50004], open=[50001])
    assert "random-ports-open" not in names(closed.model_copy(update={"behaviour": Behaviour(random_ports=few)}))
    echo = Record(ip="127.64.0.2", port=104, status="protocol-error", behaviour=Behaviour(echoed=True))
    assert judge(echo).verdict == "honeypot"


def test_web_pages():
    page = Record(ip="127.64.0.3", port=80, status="success", service="http",
                  http=HttpFacts(url="http://127.64.0.3/", status_code=200, title="DICOMHawk"))
    assess(page)
    assert page.deception is not None and page.deception.verdict == "honeypot"
    demo = page.model_copy(update={"http": HttpFacts(url="http://127.64.0.3/", title="Orthanc Demo Server")})
    assert judge(demo).verdict == "demo"


def test_nothing_to_judge_for_endpoints_that_never_answered():
    for status in ("blocked", "connection-refused", "connection-timeout"):
        assert judge(Record(ip="127.64.0.4", port=104, status=status,
                            behaviour=Behaviour(silent=True, held_open=True))) is None


def test_override_wins():
    assert effective("honeypot", 0.95, "real") == (None, 0.0)
    assert effective(None, None, "honeypot") == ("honeypot", 1.0)
    assert effective("tarpit", 0.6, None) == ("tarpit", 0.6)
    assert is_trap("honeypot", 0.8, None, 0.7) and not is_trap("honeypot", 0.8, "real", 0.7)
    assert not is_trap("tarpit", 0.6, None, 0.7) and is_trap(None, None, "honeypot", 0.7)


def test_every_rule_says_where_it_comes_from_and_how_it_can_be_wrong():
    assert len(BY_NAME) == len(RULES)
    for rule in RULES:
        assert rule.source and rule.false_positive and 0 < rule.weight < 1
        assert rule.verdict in ("honeypot", "tarpit", "accepts-all", "demo")
