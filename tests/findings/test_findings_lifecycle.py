"""The finding lifecycle and scan diffs: pure functions, no database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pacswatch.findings.lifecycle import (
    FindingState,
    Look,
    advance,
    diff_scans,
    opt_out,
    summarize,
)

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)


def run(*looks, confirm=timedelta(0)):
    state, kinds = None, []
    for look in looks:
        state, events = advance(state, look, confirm)
        kinds += [e.kind for e in events]
    return state, kinds


def test_first_severity_opens_a_finding():
    state, kinds = run(Look("success", "critical", T0))
    assert kinds == ["new"] and state == FindingState("open", "critical", T0, T0, seen_from="")


def test_nothing_exposed_and_no_finding_stays_nothing():
    assert run(Look("connection-refused", None, T0)) == (None, [])


def test_fixed_then_reopened_keeps_first_seen():
    state, kinds = run(Look("success", "high", T0), Look("connection-refused", None, T0 + H),
                       Look("connection-timeout", None, T0 + 2 * H), Look("success", "critical", T0 + 3 * H))
    assert kinds == ["new", "missed", "fixed", "reopened"]  # two misses fix (one did before the two-miss rule)
    assert state.status == "reopened" and state.first_seen == T0 and state.reopen_count == 1
    assert state.severity == "critical" and state.fixed_at is None and state.reopened_at == T0 + 3 * H


@pytest.mark.parametrize("status", ["blocked", "error", "io-timeout"])
def test_inconclusive_looks_change_nothing(status):
    opened, _ = run(Look("success", "high", T0))
    assert advance(opened, Look(status, None, T0 + H)) == (opened, ())


def test_severity_change_is_an_event_and_same_severity_is_not():
    state, kinds = run(Look("success", "high", T0), Look("success", "high", T0 + H), Look("success", "low", T0 + 2 * H))
    assert kinds == ["new", "severity"] and state.last_seen == T0 + 2 * H


def test_an_older_look_cannot_undo_a_newer_one():
    opened, _ = run(Look("success", "high", T0 + H))
    assert advance(opened, Look("connection-refused", None, T0)) == (opened, ())
    missed, _ = advance(opened, Look("connection-refused", None, T0 + 2 * H))
    assert advance(missed, Look("success", "high", T0 + 1.5 * H)) == (missed, ())
    fixed, _ = advance(missed, Look("connection-refused", None, T0 + 8 * H))
    assert fixed.status == "fixed"
    assert advance(fixed, Look("success", "high", T0 + 7 * H)) == (fixed, ())


def test_opt_out_closes_an_active_finding_and_a_blocked_look_keeps_it_closed():
    opened, _ = run(Look("success", "critical", T0))
    closed, events = opt_out(opened, T0 + H)
    assert closed.status == "opted-out" and not closed.active and closed.fixed_at == T0 + H
    assert [(e.kind, e.old_severity, e.new_severity, e.at) for e in events] == [("opted-out", "critical", None, T0 + H)]
    # While the opt-out stands every scan of it is `blocked`: nothing changes, nothing reopens.
    assert advance(closed, Look("blocked", None, T0 + 2 * H)) == (closed, ())
    assert advance(closed, Look("connection-refused", None, T0 + 2 * H)) == (closed, ())
    assert opt_out(closed, T0 + 3 * H) == (closed, ())  # already closed: no second event
    # A look older than the opt-out (a resumed old scan) cannot undo it either.
    assert advance(closed, Look("success", "critical", T0 + 0.5 * H)) == (closed, ())


def test_a_lifted_opt_out_reopens_when_the_exposure_is_seen_again():
    opened, _ = run(Look("success", "high", T0))
    closed, _ = opt_out(opened, T0 + H)
    again, events = advance(closed, Look("success", "high", T0 + 5 * H))
    assert again.status == "reopened" and again.reopen_count == 1 and again.fixed_at is None
    assert [e.kind for e in events] == ["reopened"]


def test_opt_out_leaves_a_fixed_finding_fixed():
    fixed, _ = run(Look("success", "high", T0), Look("connection-refused", None, T0 + H),
                   Look("connection-refused", None, T0 + 2 * H))
    assert fixed.status == "fixed"
    assert opt_out(fixed, T0 + 3 * H) == (fixed, ())


def test_summarize_counts_kinds_and_directions():
    summary = summarize([("new", None, "high"), ("fixed", "high", None), ("reopened", "low", "low"),
                         ("severity", "low", "critical"), ("severity", "critical", "medium")])
    assert (summary.new, summary.fixed, summary.reopened, summary.raised, summary.lowered) == (1, 1, 1, 1, 1)
    assert summary.total == 5


def test_diff_scans():
    before = {("127.0.0.1", 104): "critical", ("127.0.0.2", 104): "high", ("127.0.0.3", 104): None,
              ("127.0.0.4", 104): "low", ("127.0.0.5", 104): "low"}
    after = {("127.0.0.1", 104): "critical", ("127.0.0.2", 104): None, ("127.0.0.3", 104): "medium",
             ("127.0.0.4", 104): "high", ("127.0.0.9", 104): "low"}
    diff = diff_scans(before, after)
    assert diff.appeared == (("127.0.0.3", 104), ("127.0.0.9", 104))
    assert diff.disappeared == (("127.0.0.2", 104),)
    assert diff.changed == ((("127.0.0.4", 104), "low", "high"),)
    assert diff.unchanged == 1  # 127.0.0.5 was not looked at again: neither fixed nor unchanged


def test_a_miss_counts_only_from_a_vantage_that_saw_the_finding():
    """Vantage flapping (issue 14): a service that A sees and B does not (a firewall between B
    and it) stays open through any number of B's scans; A's own two misses fix it."""
    east, west = "east", "west"
    looks = [Look("success", "high", T0, east)]
    looks += [Look("connection-refused" if n % 2 else "connection-timeout", None, T0 + n * H, west) for n in (1, 3, 5)]
    looks += [Look("success", "high", T0 + n * H, east) for n in (2, 4)]
    state, kinds = run(*sorted(looks, key=lambda look: look.at))
    assert kinds == ["new"] and state.status == "open" and state.seen_from == east
    state, more = advance(state, Look("connection-refused", None, T0 + 6 * H, east), timedelta(0))
    state, last = advance(state, Look("connection-refused", None, T0 + 7 * H, east), timedelta(0))
    assert [e.kind for e in more + last] == ["missed", "fixed"] and state.status == "fixed"


def test_a_sighting_from_anywhere_counts_and_adds_its_vantage():
    state, kinds = run(Look("success", "high", T0, "east"), Look("connection-refused", None, T0 + H, "east"),
                       Look("connection-refused", None, T0 + 2 * H, "east"), Look("success", "low", T0 + 3 * H, "west"),
                       Look("connection-refused", None, T0 + 4 * H, "west"))
    assert kinds == ["new", "missed", "fixed", "reopened", "missed"]
    assert state.seen_from == "east,west"


def test_counts_as_miss_is_by_vantage_and_older_findings_count_every_miss():
    from pacswatch.findings.lifecycle import counts_as_miss, seen_also_from

    assert counts_as_miss("east", "east") and not counts_as_miss("east", "west")
    assert counts_as_miss(",east", None) and counts_as_miss("", None) and not counts_as_miss("", "east")
    assert not counts_as_miss("east", None)  # an unnamed scan is a place of its own
    assert counts_as_miss(None, "west")  # stored before vantages were kept
    assert seen_also_from("west", "east") == "east,west" and seen_also_from("east,west", "west") == "east,west"
    assert seen_also_from("east", None) == ",east" and seen_also_from(None, "east") == "east"
    legacy = FindingState("open", "high", T0, T0)
    assert advance(legacy, Look("connection-refused", None, T0 + H, "west"))[1][0].kind == "missed"
