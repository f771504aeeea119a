"""findings/triage.py: which verdict holds, for notify (left out, why) and for run (held until)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pacswatch.findings.triage import held_services, held_until, in_force, split_triaged, standing, why_left_out

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def row(finding_id, action, minutes, until=None, ip="127.0.0.1", port=104):
    return {"finding_id": finding_id, "action": action, "at": (NOW + timedelta(minutes=minutes)).replace(tzinfo=None),
            "user_name": "bob", "until": until, "reason": "why not", "ip": ip, "port": port}


def test_the_latest_standing_verdict_counts_and_notes_do_not():
    verdicts = standing([row(1, "false-positive", -30), row(1, "note", -20), row(1, "cleared", -10),
                         row(2, "cleared", -30), row(2, "suppressed", -10, NOW + timedelta(days=1)),
                         row(3, "rescan", -5)])
    assert in_force(verdicts[1], NOW) is None
    assert in_force(verdicts[2], NOW) == "suppressed"
    assert 3 not in verdicts
    assert verdicts[2].at.tzinfo is timezone.utc  # SQLite gives naive UTC times


def test_a_suppression_ends_at_its_date_a_false_positive_does_not():
    until = NOW + timedelta(hours=2)
    verdicts = standing([row(1, "suppressed", -1, until, port=1), row(2, "false-positive", -1, port=2)])
    assert held_until(verdicts[1], NOW) == until
    assert held_until(verdicts[1], until) is None and why_left_out(verdicts[1], until) is None
    assert held_until(verdicts[2], NOW) is None  # rescanned as usual
    assert why_left_out(verdicts[2], NOW + timedelta(days=400)) == "marked a false positive by bob on 2026-12-06: why not"
    assert held_services(verdicts, NOW) == {("127.0.0.1", 1): until}
    kept, left_out = split_triaged([{"id": 1, "ip": "127.0.0.1", "port": 1}, {"id": 2, "ip": "127.0.0.1", "port": 2},
                                    {"id": 3, "ip": "127.0.0.1", "port": 3}], verdicts, NOW)
    assert [f["id"] for f in kept] == [3]
    assert [(port, verdict) for _, port, verdict, _ in left_out] == [(1, "suppressed"), (2, "false-positive")]
    assert left_out[0][3] == "suppressed until 2026-12-06 14:00 UTC by bob: why not"
