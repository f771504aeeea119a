"""Findings that do not flap (issue 12, item 2): one scan that misses a finding leaves it open
with missed_since; a second miss at least confirm_fixed_after later fixes it; a sighting in
between clears the miss. Pure lifecycle and schedule first, then the repository on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pacswatch.findings.lifecycle import FindingState, Look, advance, explain
from pacswatch.findings.schedule import RescanPolicy, parse_confirm_after
from pacswatch.record import AssociationFacts, DicomFacts, Find, Record

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
SIX = 6 * H


def opened(severity="critical") -> FindingState:
    state, _ = advance(None, Look("success", severity, T0))
    return state


def step(state, status, at, severity=None, confirm=SIX):
    new, events = advance(state, Look(status, severity, at), confirm)
    return new, [e.kind for e in events]


def test_one_miss_leaves_the_finding_open_with_missed_since():
    state, kinds = step(opened(), "connection-refused", T0 + H)
    assert kinds == ["missed"]
    assert state.status == "open" and state.active and state.missed_since == T0 + H and state.fixed_at is None
    assert state.severity == "critical" and state.last_seen == T0


def test_a_second_miss_too_soon_changes_nothing_and_one_late_enough_fixes():
    state, _ = step(opened(), "connection-refused", T0 + H)
    early, kinds = step(state, "connection-timeout", T0 + H + SIX - timedelta(seconds=1))
    assert kinds == [] and early == state  # still open, the first miss still counts from T0 + 1 h
    fixed, kinds = step(early, "connection-timeout", T0 + H + SIX)
    assert kinds == ["fixed"]
    assert fixed.status == "fixed" and fixed.fixed_at == T0 + H + SIX and fixed.missed_since is None


def test_zero_fixes_on_any_later_second_miss_but_not_on_the_same_look_twice():
    state, _ = step(opened(), "connection-refused", T0 + H, confirm=timedelta(0))
    same, kinds = step(state, "connection-refused", T0 + H, confirm=timedelta(0))
    assert kinds == [] and same.status == "open"  # the same moment is the same look (a duplicate)
    fixed, kinds = step(state, "connection-refused", T0 + H + timedelta(milliseconds=1), confirm=timedelta(0))
    assert kinds == ["fixed"] and fixed.status == "fixed"


def test_a_sighting_between_misses_clears_the_miss_and_the_next_miss_starts_over():
    state, _ = step(opened(), "connection-refused", T0 + H)
    back, kinds = step(state, "success", T0 + 2 * H, "high")
    assert kinds == ["seen-again", "severity"]
    assert back.missed_since is None and back.status == "open" and back.severity == "high"
    assert back.last_seen == T0 + 2 * H
    again, kinds = step(back, "connection-refused", T0 + 10 * H)  # 9 h after the first miss: not a second
    assert kinds == ["missed"] and again.status == "open" and again.missed_since == T0 + 10 * H


@pytest.mark.parametrize("status", ["io-timeout", "error", "blocked"])
def test_inconclusive_looks_neither_count_as_a_miss_nor_clear_one(status):
    state, _ = step(opened(), "connection-refused", T0 + H)
    same, kinds = step(state, status, T0 + 8 * H)
    assert kinds == [] and same == state
    fixed, kinds = step(same, "connection-refused", T0 + 9 * H)
    assert kinds == ["fixed"]
    assert step(opened(), status, T0 + H) == (opened(), [])


def test_a_missed_reopened_finding_stays_reopened_until_confirmed():
    state, _ = step(opened(), "connection-refused", T0 + H)
    fixed, _ = step(state, "connection-refused", T0 + 8 * H)
    reopened, kinds = step(fixed, "success", T0 + 9 * H, "low")
    assert kinds == ["reopened"]
    missed, kinds = step(reopened, "connection-refused", T0 + 10 * H)
    assert kinds == ["missed"] and missed.status == "reopened" and missed.active


def test_an_older_look_cannot_undo_a_miss():
    state, _ = step(opened(), "connection-refused", T0 + 2 * H)
    assert step(state, "success", T0 + H, "critical") == (state, [])  # a resumed old scan's record


def test_the_confirmation_rescan_is_due_confirm_fixed_after_the_miss():
    policy = RescanPolicy()
    assert policy.confirm_fixed_after == SIX
    miss = T0 + H
    # The miss itself: the confirmation (6 h) comes before the pace of a critical finding (12 h).
    assert policy.next_due(miss, None, "open", "critical", None, miss) == miss + SIX
    # A second miss too early: still due at the confirmation, not 6 h after this look.
    assert policy.next_due(miss + 2 * H, None, "open", "critical", None, miss) == miss + SIX
    # The confirmation is later than the finding's own pace: the pace wins.
    fast = RescanPolicy.from_overrides(["critical=2h"])
    assert fast.next_due(miss, None, "open", "critical", None, miss) == miss + 2 * H
    # An inconclusive look after the confirmation time: the pace, not an immediate rescan again.
    assert policy.next_due(miss + 7 * H, None, "open", "critical", None, miss) == miss + 7 * H + 12 * H
    # Zero: due at once after the miss.
    zero = RescanPolicy(confirm_fixed_after=timedelta(0))
    assert zero.next_due(miss, None, "open", "critical", None, miss) == miss
    assert RescanPolicy.from_overrides([], timedelta(minutes=30)).confirm_fixed_after == timedelta(minutes=30)


def test_parse_confirm_after():
    assert parse_confirm_after("6h") == SIX and parse_confirm_after("30m") == timedelta(minutes=30)
    assert parse_confirm_after("0") == timedelta(0) and parse_confirm_after(" 0s ") == timedelta(0)
    for bad in ("", "-1h", "six hours", "6"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_confirm_after(bad)


def test_explain_says_why_each_change_happened():
    rows = [
        {"kind": "new", "at": T0, "scan_id": 10, "old_severity": None, "new_severity": "critical"},
        {"kind": "missed", "at": T0 + H, "scan_id": 12, "old_severity": "critical", "new_severity": None,
         "look_status": "connection-refused"},
        {"kind": "seen-again", "at": T0 + 3 * H, "scan_id": 13, "old_severity": "critical",
         "new_severity": "critical", "look_status": "success"},
        {"kind": "missed", "at": T0 + 4 * H, "scan_id": 14, "old_severity": "critical", "new_severity": None,
         "look_status": "connection-timeout"},
        {"kind": "fixed", "at": T0 + 10 * H, "scan_id": 16, "old_severity": "critical", "new_severity": None,
         "look_status": "connection-refused"},
        {"kind": "reopened", "at": T0 + 30 * H, "scan_id": 17, "old_severity": "critical", "new_severity": "high"},
        {"kind": "opted-out", "at": T0 + 31 * H, "scan_id": None, "old_severity": "high", "new_severity": None},
    ]
    assert explain(rows) == [
        "new critical finding, seen by scan 10",
        "missed by scan 12 (connection-refused); still open until a second miss confirms it",
        "seen again by scan 13, 2 h after the miss: the miss is cleared",
        "missed by scan 14 (connection-timeout); still open until a second miss confirms it",
        "fixed after a second miss by scan 16 (connection-refused), 6 h after the first by scan 14",
        "reopened: seen high again by scan 17",
        "closed: the owner is on the opt-out list (not scanned since)",
    ]


# --- the repository, SQLite and PostgreSQL --------------------------------------------------------


def exposed(ip, port, at):
    facts = DicomFacts(association=AssociationFacts(accepted=True), find=Find(allowed=True, studies=4, patients=2))
    return Record(ip=ip, port=port, status="success", service="dicom", severity="critical", dicom=facts,
                  reasons=["C-FIND lists studies."], scanned_at=at)


def refused(ip, port, at, status="connection-refused"):
    return Record(ip=ip, port=port, status=status, scanned_at=at)


def scan(repo, *records, policy=None):
    scan_id = repo.create_scan(kind="scan", parameters={}, seed=1, fingerprint="f", targets_key="k",
                               plan_size=len(records))
    repo.ingest(scan_id, [(None, r) for r in records], policy=policy)
    return scan_id


def test_the_repository_keeps_missed_since_and_fixes_on_the_confirmed_miss(repo):
    ep = ("127.61.0.1", 104)
    first = scan(repo, exposed(*ep, T0))
    down = scan(repo, refused(*ep, T0 + H))
    (finding,) = repo.findings()
    assert finding["status"] == "open" and finding["missed_since"] == T0 + H and finding["fixed_at"] is None
    (service,) = repo.services()
    assert service["next_due"] == T0 + H + SIX  # the confirmation rescan
    assert [f["ip"] for f in repo.findings(statuses=["open"])] == [ep[0]]
    assert repo.stats()["findings_by_severity"] == {"critical": 1}  # still counted as exposed

    early = scan(repo, refused(*ep, T0 + 2 * H, "connection-timeout"))
    assert repo.findings()[0]["status"] == "open" and repo.services()[0]["next_due"] == T0 + H + SIX
    confirmed = scan(repo, refused(*ep, T0 + H + SIX, "connection-timeout"))
    (finding,) = repo.findings()
    assert finding["status"] == "fixed" and finding["fixed_at"] == T0 + H + SIX and finding["missed_since"] is None
    events = repo.events(ip=ep[0])
    assert [(e["kind"], e["scan_id"], e["look_status"]) for e in events] == [
        ("new", first, "success"), ("missed", down, "connection-refused"),
        ("fixed", confirmed, "connection-timeout")]
    assert early not in {e["scan_id"] for e in events}
    assert explain(events)[-1] == (f"fixed after a second miss by scan {confirmed} (connection-timeout), "
                                   f"6 h after the first by scan {down}")


def test_the_repository_clears_a_miss_when_the_service_answers_again(repo):
    ep = ("127.61.0.2", 4242)
    scan(repo, exposed(*ep, T0))
    scan(repo, refused(*ep, T0 + H), policy=RescanPolicy(confirm_fixed_after=timedelta(0)))
    back = scan(repo, exposed(*ep, T0 + 2 * H), policy=RescanPolicy(confirm_fixed_after=timedelta(0)))
    (finding,) = repo.findings()
    assert finding["status"] == "open" and finding["missed_since"] is None and finding["last_seen"] == T0 + 2 * H
    assert [e["kind"] for e in repo.events(ip=ep[0])] == ["new", "missed", "seen-again"]
    assert repo.events(scan_id=back)[0]["kind"] == "seen-again"
    assert repo.services()[0]["next_due"] == T0 + 2 * H + 12 * H  # back to the critical pace


def test_an_opt_out_closes_a_missed_finding_without_its_miss(repo):
    from pacswatch.campaign.scanrun import STALE
    from pacswatch.store.check import check_database

    ep = ("127.61.0.3", 104)
    scan(repo, exposed(*ep, T0))
    scan(repo, refused(*ep, T0 + H))
    assert repo.findings()[0]["missed_since"] == T0 + H
    (closed,) = repo.close_opted_out(["127.61.0.0/24"], at=T0 + 2 * H)
    (finding,) = repo.findings()
    assert finding["status"] == "opted-out" and finding["missed_since"] is None and finding["fixed_at"] == T0 + 2 * H
    assert check_database(repo, stale=STALE).sound
