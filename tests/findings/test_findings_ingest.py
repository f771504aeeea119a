"""plan_batch: what a batch of records writes, decided without a database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pacswatch.findings.ingest import exposure_counts, plan_batch
from pacswatch.findings.schedule import RescanPolicy
from pacswatch.record import AssociationFacts, DicomFacts, Find, HttpFacts, Record

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def rec(ip, status="success", severity="high", at=T0, port=104):
    facts = DicomFacts(association=AssociationFacts(accepted=True), find=Find(allowed=True, studies=3, patients=2)) \
        if status == "success" else None
    return Record(ip=ip, port=port, status=status, severity=severity if status == "success" else None,
                  service="dicom" if status == "success" else None, dicom=facts, scanned_at=at)


def test_new_service_new_finding_and_its_event():
    plan = plan_batch([(0, rec("127.0.0.1")), (1, rec("127.0.0.2", "connection-refused"))], {}, {},
                      scan_id=7, policy=RescanPolicy())
    assert len(plan.observations) == 1 and plan.observations[0]["scan_id"] == 7
    assert plan.counts == {"success": 1, "connection-refused": 1}
    (svc,) = plan.services_new
    assert svc["studies"] == 3 and svc["next_due"] == T0 + timedelta(hours=24) and svc["_obs"] == 0
    (finding,) = plan.findings_new
    assert finding["_key"] == ("127.0.0.1", 104) and finding["status"] == "open"
    assert [(e["kind"], e["_obs"]) for e in plan.events] == [("new", 0)]


def _known(missed_since=None):
    services = {("127.0.0.1", 104): {"id": 3, "ip": "127.0.0.1", "port": 104, "first_seen": T0, "last_seen": T0,
                                     "last_checked": missed_since or T0, "severity": "high", "product": "X",
                                     "status": "success"}}
    findings = {("127.0.0.1", 104): {"id": 9, "ip": "127.0.0.1", "port": 104, "status": "open", "severity": "high",
                                     "first_seen": T0, "last_seen": T0, "fixed_at": None, "reopened_at": None,
                                     "reopen_count": 0, "missed_since": missed_since, "reasons": ["x"]}}
    return services, findings


def test_known_service_going_away_is_missed_then_fixed_by_a_second_miss():
    # Two-miss rule: the first miss leaves the finding open with missed_since and asks for a
    # confirmation rescan confirm_fixed_after later (before this test's one miss fixed it).
    later = T0 + timedelta(days=1)
    plan = plan_batch([(5, rec("127.0.0.1", "connection-refused", at=later))], *_known(),
                      scan_id=2, policy=RescanPolicy())
    (svc,) = plan.services_changed
    assert svc["id"] == 3 and svc["severity"] is None and svc["product"] == "X" and svc["last_seen"] == T0
    assert svc["next_due"] == later + timedelta(hours=6)  # the confirmation, before the 24 h pace of high
    (finding,) = plan.findings_changed
    assert finding["status"] == "open" and finding["missed_since"] == later and finding["fixed_at"] is None
    assert [e["kind"] for e in plan.events] == ["missed"]

    confirm = later + timedelta(hours=6)
    plan = plan_batch([(5, rec("127.0.0.1", "connection-timeout", at=confirm))], *_known(missed_since=later),
                      scan_id=3, policy=RescanPolicy())
    (svc,) = plan.services_changed
    assert svc["next_due"] == confirm + timedelta(days=7)  # recently fixed: weekly
    (finding,) = plan.findings_changed
    assert finding["id"] == 9 and finding["status"] == "fixed" and finding["fixed_at"] == confirm
    assert finding["missed_since"] is None
    assert [e["kind"] for e in plan.events] == ["fixed"]


def test_blocked_known_service_is_pushed_out_not_fixed():
    services = {("127.0.0.1", 104): {"id": 3, "ip": "127.0.0.1", "port": 104, "first_seen": T0, "last_seen": T0,
                                     "last_checked": T0, "severity": "high", "status": "success"}}
    plan = plan_batch([(0, rec("127.0.0.1", "blocked", at=T0 + timedelta(hours=1)))], services, {},
                      scan_id=2, policy=RescanPolicy())
    (svc,) = plan.services_changed
    assert svc["severity"] == "high" and svc["status"] == "blocked"
    assert svc["next_due"] == T0 + timedelta(hours=1, days=90)
    assert plan.events == []


def test_same_endpoint_twice_in_a_batch():
    plan = plan_batch([(0, rec("127.0.0.1")), (1, rec("127.0.0.1", "connection-refused", at=T0 + timedelta(1)))],
                      {}, {}, scan_id=1, policy=RescanPolicy())
    assert len(plan.services_new) == 1 and len(plan.findings_new) == 1
    # One miss does not fix (the two-miss rule; before, this batch fixed it).
    assert plan.findings_new[0]["status"] == "open" and plan.findings_new[0]["missed_since"] == T0 + timedelta(1)
    assert [e["kind"] for e in plan.events] == ["new", "missed"]


def test_exposure_counts_from_http():
    record = Record(ip="127.0.0.1", port=8042, status="success", service="http",
                    http=HttpFacts(url="http://127.0.0.1:8042/", studies=4, patients=1))
    assert exposure_counts(record) == (4, 1)
