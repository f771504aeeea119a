"""The repository on SQLite and PostgreSQL: observations, services, findings and their events,
completed work, opt-out and scope entries, queries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pacswatch.findings.schedule import RescanPolicy
from pacswatch.findings.work import IntervalSet
from pacswatch.record import AssociationFacts, DicomFacts, Find, Product, Record

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def dicom(ip, port, severity="critical", at=T0, studies=12, patients=5, product="Orthanc"):
    facts = DicomFacts(association=AssociationFacts(accepted=True), find=Find(allowed=True, studies=studies, patients=patients))
    return Record(ip=ip, port=port, status="success", service="dicom", severity=severity, dicom=facts,
                  product=Product(name=product, version="1.12"), reasons=["C-FIND open"], scanned_at=at)


def gone(ip, port, at, status="connection-refused"):
    return Record(ip=ip, port=port, status=status, scanned_at=at)


def new_scan(repo, size=10):
    return repo.create_scan(kind="scan", parameters={"targets": []}, seed=1, fingerprint="f" * 64,
                            targets_key="k" * 64, plan_size=size)


def test_ingest_keeps_services_and_counts_the_rest(repo):
    scan = new_scan(repo)
    work = IntervalSet()
    items = [(0, dicom("127.1.0.1", 104)), (1, gone("127.1.0.2", 104, T0)), (2, gone("127.1.0.3", 104, T0, "blocked"))]
    for index, _ in items:
        work.add(index)
    repo.ingest(scan, items, work=work)
    assert [(o["ip"], o["severity"], o["studies"], o["patients"]) for o in repo.observations()] == \
        [("127.1.0.1", "critical", 12, 5)]
    row = repo.scan(scan)
    assert row["done"] == 3 and row["counts"] == {"success": 1, "connection-refused": 1, "blocked": 1}
    assert repo.completed(scan).intervals() == [(0, 2)]
    (service,) = repo.services()
    assert service["product"] == "Orthanc" and service["next_due"] == T0 + timedelta(hours=12)
    assert service["next_due"].tzinfo is not None


def test_keep_all_stores_every_record(repo):
    scan = new_scan(repo)
    repo.ingest(scan, [(0, gone("127.1.0.2", 104, T0))], keep_all=True)
    assert [o["status"] for o in repo.observations()] == ["connection-refused"]
    assert repo.services() == [] and repo.findings() == []


def test_observation_keeps_the_record_as_json(repo):
    scan = new_scan(repo)
    record = dicom("127.1.0.1", 104)
    repo.ingest(scan, [(0, record)])
    (obs,) = repo.observations()
    assert Record.model_validate(obs["record"]) == record


def test_lifecycle_new_severity_fixed_reopened(repo):
    ep = ("127.1.0.9", 11112)
    looks = [dicom(*ep, "high", T0), dicom(*ep, "critical", T0 + timedelta(hours=1)),
             gone(*ep, T0 + timedelta(hours=2), "io-timeout"),  # proves nothing
             gone(*ep, T0 + timedelta(hours=3)), gone(*ep, T0 + timedelta(hours=9)),
             dicom(*ep, "medium", T0 + timedelta(hours=10))]
    for record in looks:
        repo.ingest(new_scan(repo), [(0, record)])
    (finding,) = repo.findings()
    assert finding["status"] == "reopened" and finding["severity"] == "medium" and finding["reopen_count"] == 1
    assert finding["first_seen"] == T0 and finding["last_seen"] == T0 + timedelta(hours=10)
    assert finding["fixed_at"] is None and finding["missed_since"] is None
    events = [(e["kind"], e["old_severity"], e["new_severity"], e["scan_id"]) for e in repo.events()]
    # Two misses 6 h apart fix it (the two-miss rule; one miss fixed it before).
    assert events == [("new", None, "high", 1), ("severity", "high", "critical", 2), ("missed", "critical", None, 4),
                      ("fixed", "critical", None, 5), ("reopened", "critical", "medium", 6)]
    assert len(repo.observations(ip=ep[0], port=ep[1])) == 6  # a known service: every look is kept


def test_finding_filters(repo):
    scan = new_scan(repo)
    repo.ingest(scan, [(0, dicom("127.2.0.1", 104, "critical", T0)), (1, dicom("127.2.0.2", 104, "low", T0)),
                       (2, dicom("127.2.0.3", 104, "high", T0))])
    for days in (3, 4):  # two misses fix it
        repo.ingest(new_scan(repo), [(0, gone("127.2.0.3", 104, T0 + timedelta(days=days)))])
    assert {f["ip"] for f in repo.findings(severities=["critical", "high"])} == {"127.2.0.1", "127.2.0.3"}
    assert [f["ip"] for f in repo.findings(statuses=["fixed"])] == ["127.2.0.3"]
    assert [f["ip"] for f in repo.findings(since=T0 + timedelta(days=1))] == ["127.2.0.3"]
    assert repo.events(finding_ids=[repo.findings(statuses=["fixed"])[0]["id"]])[-1]["kind"] == "fixed"


def test_stats_now_and_over_time(repo):
    first = new_scan(repo)
    repo.ingest(first, [(0, dicom("127.3.0.1", 104, studies=10, patients=4)),
                        (1, dicom("127.3.0.2", 4242, "high", studies=2, patients=1, product="DCMTK"))])
    second = new_scan(repo)
    repo.ingest(second, [(0, gone("127.3.0.1", 104, T0 + timedelta(days=1)))])
    third = new_scan(repo)
    repo.ingest(third, [(0, gone("127.3.0.1", 104, T0 + timedelta(days=2)))])  # the second miss fixes
    stats = repo.stats()
    assert stats["now"] == {"exposed_services": 1, "studies": 2, "patients": 1}
    assert stats["findings_by_severity"] == {"high": 1}
    assert stats["findings_by_status"] == {"open": 1, "fixed": 1}
    assert stats["exposed_by_product"] == {"DCMTK": 1} and stats["exposed_by_port"] == {"4242": 1}
    assert [(r["scan"], r["exposed_services"], r["studies"], r["patients"]) for r in stats["over_time"]] == \
        [(first, 2, 12, 5), (second, 0, 0, 0), (third, 0, 0, 0)]


def test_due_services_follow_the_policy(repo):
    policy = RescanPolicy.from_overrides(["critical=1h", "none=30d"])
    scan = new_scan(repo)
    repo.ingest(scan, [(0, dicom("127.4.0.1", 104, "critical")), (1, dicom("127.4.0.2", 104, "low"))], policy=policy)
    assert [s["ip"] for s in repo.services(due_before=T0 + timedelta(hours=2))] == ["127.4.0.1"]
    assert [s["ip"] for s in repo.services(due_before=T0 + timedelta(days=7))] == ["127.4.0.1", "127.4.0.2"]


def test_older_records_do_not_undo_newer_ones(repo):
    ep = ("127.5.0.1", 104)
    repo.ingest(new_scan(repo), [(0, dicom(*ep, "critical", T0 + timedelta(hours=2)))])
    repo.ingest(new_scan(repo), [(0, gone(*ep, T0))])  # a resumed old scan's late record
    (finding,) = repo.findings()
    assert finding["status"] == "open"
    assert repo.services()[0]["status"] == "success"


def test_completed_work_is_replaced_per_batch(repo):
    scan = new_scan(repo, size=100)
    work = IntervalSet()
    for batch in ([0, 1, 2, 5], [3, 4, 9]):
        for i in batch:
            work.add(i)
        repo.ingest(scan, [(i, gone("127.6.0.1", 1000 + i, T0)) for i in batch], work=work)
    assert repo.completed(scan).intervals() == [(0, 5), (9, 9)]
    assert repo.scan(scan)["done"] == 7


def test_completed_work_follows_a_scan_taken_in_random_order(repo):
    # Each batch writes only the intervals that changed since the last (Repository._progress):
    # intervals that grow, merge and appear must all end up as the set says, after every batch,
    # and a second repository on the same database (a resumed scan) starts from what is there.
    import random

    scan = new_scan(repo, size=400)
    work, order = IntervalSet(), list(range(400))
    random.Random(7).shuffle(order)
    for start in range(0, 300, 37):
        batch = order[start : start + 37]
        for i in batch:
            work.add(i)
        repo.ingest(scan, [(i, gone("127.6.0.2", 1000 + i, T0)) for i in batch], work=work)
        assert repo.completed(scan).intervals() == work.intervals()
    resumed = type(repo)(repo.engine)
    for i in order[300:]:
        work.add(i)
    resumed.ingest(scan, [(i, gone("127.6.0.2", 1000 + i, T0)) for i in order[300:]], work=work)
    assert repo.completed(scan).intervals() == [(0, 399)] and repo.scan(scan)["done"] == 400


def test_completed_work_after_a_failed_batch_is_written_whole(repo, monkeypatch):
    # A batch that fails after taking the set's changes (its transaction rolled back) leaves
    # scan_work behind the set: the next batch must write every interval, not the changes since.
    from pacswatch.store import StoreError
    from pacswatch.store.tables import scan_work

    scan = new_scan(repo, size=100)
    work = IntervalSet()
    batches = [[0, 1, 5], [2, 20], [3, 4]]  # 20: a run only the failed batch touched
    bulk_write = type(repo)._bulk_write

    def failing(self, conn, kind, table, memo, rows):
        if table is scan_work:
            raise StoreError("disk full")
        bulk_write(self, conn, kind, table, memo, rows)

    for n, batch in enumerate(batches):
        for i in batch:
            work.add(i)
        items = [(i, gone("127.6.0.3", 1000 + i, T0)) for i in batch]
        if n == 1:
            with monkeypatch.context() as patch:
                patch.setattr(type(repo), "_bulk_write", failing)
                with pytest.raises(StoreError):
                    repo.ingest(scan, items, work=work)
        else:
            repo.ingest(scan, items, work=work)
    assert repo.completed(scan).intervals() == work.intervals() == [(0, 5), (20, 20)]


def test_optout_and_scope_entries(repo):
    a = repo.add_optout("127.7.0.0/16", "pacs-admin@example.org", note="asked by phone")
    b = repo.add_optout("127.8.0.1", "x@example.org", requested_at=T0)
    rows = repo.optouts()
    assert [r["cidr"] for r in rows] == ["127.7.0.0/16", "127.8.0.1"] and rows[1]["requested_at"] == T0
    assert "@" in rows[0]["added_by"]
    assert repo.remove_optout(a) and not repo.remove_optout(a)
    assert [r["id"] for r in repo.optouts()] == [b]
    s = repo.add_scope("127.0.0.0/8", "the lab")
    assert [r["cidr"] for r in repo.scope_entries()] == ["127.0.0.0/8"]
    assert repo.remove_scope(s) and repo.scope_entries() == []


def test_close_opted_out_closes_active_findings_in_the_networks(repo):
    scan = new_scan(repo)
    repo.ingest(scan, [(0, dicom("127.7.0.1", 104)), (1, dicom("127.7.0.2", 4242, "high")),
                       (2, dicom("::ffff:127.7.1.5", 104, "medium")), (3, dicom("127.9.0.1", 104)),
                       (4, dicom("::1", 104, "low"))])
    at = T0 + timedelta(hours=1)
    closed = repo.close_opted_out(["127.7.0.0/24", "::ffff:127.7.1.0/120"], at=at)
    assert sorted((r["ip"], r["port"], r["severity"]) for r in closed) == [
        ("127.7.0.1", 104, "critical"), ("127.7.0.2", 4242, "high"), ("::ffff:127.7.1.5", 104, "medium")]
    by_ip = {f["ip"]: f for f in repo.findings()}
    assert {ip: f["status"] for ip, f in by_ip.items()} == {
        "127.7.0.1": "opted-out", "127.7.0.2": "opted-out", "::ffff:127.7.1.5": "opted-out",
        "127.9.0.1": "open", "::1": "open"}
    assert by_ip["127.7.0.1"]["fixed_at"] == at
    events = repo.events(ip="127.7.0.1")
    assert [(e["kind"], e["old_severity"], e["new_severity"], e["at"], e["scan_id"]) for e in events] == [
        ("new", None, "critical", T0, scan), ("opted-out", "critical", None, at, None)]
    # An IPv4 network also covers the mapped spelling of its addresses; and a second call
    # closes nothing again (no second event).
    assert [r["ip"] for r in repo.close_opted_out(["127.9.0.0/16"], at=at)] == ["127.9.0.1"]
    assert repo.close_opted_out(["127.0.0.0/8"], at=at) == []
    assert len(repo.events(ip="127.7.0.1")) == 2
    # A later scan that is refused by the opt-out (blocked) does not reopen it.
    repo.ingest(new_scan(repo), [(0, gone("127.7.0.1", 104, at + timedelta(hours=1), "blocked"))])
    assert {f["ip"]: f["status"] for f in repo.findings()}["127.7.0.1"] == "opted-out"
    assert repo.stats()["findings_by_status"] == {"opted-out": 4, "open": 1}


def test_findings_say_when_their_counts_were_capped_even_after_a_miss(repo):
    capped = dicom("127.10.0.1", 104, studies=1000, patients=None)
    capped.dicom.find.capped = True
    repo.ingest(new_scan(repo), [(0, capped), (1, dicom("127.10.0.2", 104))])
    repo.ingest(new_scan(repo), [(0, gone("127.10.0.1", 104, T0 + timedelta(hours=1)))])  # counts stay
    by_ip = {f["ip"]: f for f in repo.findings()}
    assert (by_ip["127.10.0.1"]["studies"], by_ip["127.10.0.1"]["capped"]) == (1000, True)
    assert not by_ip["127.10.0.2"]["capped"]


def test_stats_do_not_count_an_opted_out_service_as_exposed(repo):
    repo.ingest(new_scan(repo), [(0, dicom("127.11.0.1", 104, studies=10, patients=4)),
                                 (1, dicom("127.11.1.1", 104, "high", studies=2, patients=1, product="DCMTK"))])
    repo.close_opted_out(["127.11.0.0/24"], at=T0 + timedelta(hours=1))
    stats = repo.stats()
    assert stats["now"] == {"exposed_services": 1, "studies": 2, "patients": 1}
    assert stats["exposed_by_product"] == {"DCMTK": 1} and stats["findings_by_status"] == {"opted-out": 1, "open": 1}


def test_previous_scan_of_the_same_targets(repo):
    first = repo.create_scan(kind="scan", parameters={}, seed=1, fingerprint="a", targets_key="same", plan_size=1)
    repo.create_scan(kind="scan", parameters={}, seed=2, fingerprint="b", targets_key="other", plan_size=1)
    third = repo.create_scan(kind="scan", parameters={}, seed=3, fingerprint="c", targets_key="same", plan_size=1)
    assert repo.previous_scan(third)["id"] == first
    assert repo.previous_scan(first) is None
    repo.finish_scan(third, "finished")
    assert repo.scan(third)["finished_at"] is not None
    assert [s["id"] for s in repo.scans(kind="scan", statuses=["running"])] == [2, first]


def test_replan_moves_next_looks_to_another_policy_and_settings_keep_it(repo):
    scan = new_scan(repo)
    repo.ingest(scan, [(0, dicom("127.10.0.1", 104, "critical")), (1, dicom("127.10.0.2", 104, "low"))])
    repo.ingest(new_scan(repo), [(0, gone("127.10.0.3", 104, T0))])  # never a service: nothing to plan
    assert repo.replan(RescanPolicy()) == 0  # the policy that scheduled them
    faster = RescanPolicy.from_overrides(["critical=1h"])
    assert repo.replan(faster) == 1
    due = {s["ip"]: s["next_due"] for s in repo.services()}
    assert due == {"127.10.0.1": T0 + timedelta(hours=1), "127.10.0.2": T0 + timedelta(days=6)}
    assert repo.replan(faster) == 0
    assert repo.setting("rescan_policy") is None
    repo.set_setting("rescan_policy", faster.to_json())
    repo.set_setting("rescan_policy", faster.to_json())  # replaced, not added
    assert RescanPolicy.from_json(repo.setting("rescan_policy")) == faster


def test_sqlite_writes_keep_statement_journals_in_memory(tmp_path):
    # A multi-row INSERT journals the pages it changes; past 64 KiB SQLite spills that journal
    # to a temporary file unless temp_store is MEMORY (store/engine.py). Reads keep the default.
    from pacswatch.store import Repository

    with Repository.open(f"sqlite:///{tmp_path / 'p.db'}") as repo:
        for _ in range(2):  # the pooled connection goes from a write to a read and back
            with repo._write() as conn:
                assert conn.exec_driver_sql("PRAGMA temp_store").scalar() == 2  # MEMORY
            with repo._read() as conn:
                assert conn.exec_driver_sql("PRAGMA temp_store").scalar() == 0  # DEFAULT
