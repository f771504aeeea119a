"""Opt-out entries feed the blocklist; scopes from a file and the database narrow each other."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pacswatch.campaign.scope import campaign_blocklist, campaign_scope, normalize_network


def test_optouts_block_with_a_reason_that_names_the_entry_not_the_contact():
    rows = [{"id": 4, "cidr": "127.77.0.0/16", "contact": "admin@hospital.example",
             "requested_at": datetime(2024, 5, 2, tzinfo=timezone.utc)}]
    blocklist = campaign_blocklist(rows)
    reason = blocklist.reason_for("127.77.3.4")
    assert "opt-out" in reason and "entry 4" in reason and "2024-05-02" in reason
    assert "admin@" not in reason
    assert blocklist.reason_for("127.78.0.1") is None
    assert blocklist.reason_for("224.0.0.1") is not None  # the defaults stay


def test_scopes_narrow(tmp_path):
    scope_file = tmp_path / "scope.txt"
    scope_file.write_text("127.0.0.0/8\n")
    scope = campaign_scope(str(scope_file), [{"cidr": "127.5.0.0/16"}])
    assert scope.reason_for("127.5.0.1") is None
    assert "database" in scope.reason_for("127.6.0.1")
    assert campaign_scope(None, []) is None


@pytest.mark.parametrize("text,expected", [("127.1.0.0/16", "127.1.0.0/16"), (" 127.0.0.1 ", "127.0.0.1"),
                                           ("::1", "::1"), ("127.0.0.1-127.0.0.9", "127.0.0.1-127.0.0.9")])
def test_normalize_network(text, expected):
    assert normalize_network(text) == expected


@pytest.mark.parametrize("bad", ["127.1.0.1/16", "pacs.example.org", "300.1.1.1"])
def test_normalize_network_refuses(bad):
    with pytest.raises(ValueError):
        normalize_network(bad)
