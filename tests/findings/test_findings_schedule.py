"""Rescan scheduling: a pure function of severity and history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pacswatch.findings.schedule import DEFAULT_INTERVALS, RescanPolicy, parse_duration

T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def test_defaults_follow_cyber_hygiene():
    p = RescanPolicy()
    assert p.next_due(T0, "critical") == T0 + timedelta(hours=12)
    assert p.next_due(T0, "high") == T0 + timedelta(hours=24)
    assert p.next_due(T0, "medium") == T0 + timedelta(days=4)
    assert p.next_due(T0, "low") == T0 + timedelta(days=6)
    assert p.next_due(T0, None) == T0 + timedelta(days=90)


def test_an_inconclusive_look_keeps_the_open_findings_pace():
    assert RescanPolicy().next_due(T0, None, "open", "critical") == T0 + timedelta(hours=12)


def test_recently_fixed_is_checked_weekly_then_rests():
    p = RescanPolicy()
    assert p.next_due(T0, None, "fixed", "high", fixed_at=T0 - timedelta(days=3)) == T0 + timedelta(days=7)
    assert p.next_due(T0, None, "fixed", "high", fixed_at=T0 - timedelta(days=31)) == T0 + timedelta(days=90)


def test_overrides():
    p = RescanPolicy.from_overrides(["critical=6h", "NONE=2w"])
    assert p.intervals["critical"] == timedelta(hours=6) and p.intervals["none"] == timedelta(weeks=2)
    assert p.intervals["high"] == DEFAULT_INTERVALS["high"]
    for bad in ("critical", "urgent=1h", "critical=soon", "low=0h"):
        with pytest.raises(ValueError):
            RescanPolicy.from_overrides([bad])


@pytest.mark.parametrize("text,expected", [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)),
                                           ("1.5h", timedelta(minutes=90)), ("4d", timedelta(days=4))])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected
