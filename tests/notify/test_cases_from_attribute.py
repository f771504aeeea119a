"""Cases exist from attribution on (issue 12, item 9): `pacswatch attribute`, and the attribution
that follows every scan, open the owner's case in state `new`, so the hint printed after a scan
(`pacswatch cases`) shows something before any `notify`. Real scans of the lab through the
command line, the owner from the local contacts table; no DNS is configured (nothing but the
table is asked)."""

from __future__ import annotations

import json
import os

import pytest
from loopback_servers import violations

from pacswatch.cli import main
from pacswatch.lab import Lab

pytestmark = pytest.mark.slow
NET = os.getpid() % 200


@pytest.fixture
def lab():
    with Lab(f"127.75.{NET}.0", port=0, names=["open-archive", "echo-only"]) as running:
        yield running


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cases_json(capsys, db: str) -> list[dict]:
    code, out, _ = cli(capsys, "cases", "--json", "--database", db)
    assert code == 0
    return [json.loads(line) for line in out.splitlines()]


def scan(capsys, lab, db: str, tmp_path, *extra: str) -> str:
    targets = [f"{e.ip}:{e.port}" for e in lab.manifest]
    code, _, err = cli(capsys, "scan", *targets, "--database", db, "--no-progress", "-o", str(tmp_path / "out.jsonl"),
                       *extra)
    assert code == 0, err
    return err


@pytest.fixture
def owner(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("PACSWATCH_NOTIFY_CONFIG", raising=False)  # the defaults: no DNS, nothing sent
    db = str(tmp_path / "pacswatch.db")
    code, _, _ = cli(capsys, "owners", "add", f"127.75.{NET}.0/24", "--name", "Lab Hospital", "--contact",
                     "it@lab-hospital.example.org", "--database", db)
    assert code == 0
    return db


def test_the_attribution_after_a_scan_opens_a_new_case(lab, owner, capsys, tmp_path):
    err = " ".join(scan(capsys, lab, owner, tmp_path).split())  # as one line: the console wraps
    assert "attributed 2 exposed addresses" in err and "1 open case(s): pacswatch cases" in err
    (case,) = cases_json(capsys, owner)
    assert (case["owner_name"], case["state"], case["round"]) == ("Lab Hospital", "new", 1)
    assert sorted(map(tuple, case["services"])) == sorted(e.address for e in lab.manifest)
    code, out, _ = cli(capsys, "case", str(case["id"]), "--database", owner)
    assert code == 0 and "- -> new: exposed services attributed to Lab Hospital" in out

    # A second scan and an explicit `attribute` update the same case: no second one.
    scan(capsys, lab, owner, tmp_path)
    assert cli(capsys, "attribute", "--database", owner)[0] == 0
    assert [(c["id"], c["state"], len(c["services"])) for c in cases_json(capsys, owner)] == [(case["id"], "new", 2)]
    assert violations() == []


def test_attribute_opens_the_case_when_the_scan_did_not(lab, owner, capsys, tmp_path):
    scan(capsys, lab, owner, tmp_path, "--no-attribute")
    assert cases_json(capsys, owner) == []
    code, out, _ = cli(capsys, "attribute", "--database", owner)
    assert code == 0 and "Lab Hospital" in out
    (case,) = cases_json(capsys, owner)
    assert case["state"] == "new" and len(case["services"]) == 2
    code, out, _ = cli(capsys, "cases", "--database", owner)
    assert "Lab Hospital" in out and "new" in out
    assert violations() == []


def test_a_removed_owners_case_and_routes_never_pass_to_the_next_owner_given_its_id(lab, owner, capsys, tmp_path):
    """SQLite gives the next owner the id of the last one removed, and cases and attributions are
    keyed by it. Removing an owner closes its open cases and forgets its attributions, so a new
    owner with the same id (another organisation, here owning one of the two servers) starts its
    own case, greeted by its own name, and is never told about the old owner's other server."""
    scan(capsys, lab, owner, tmp_path)
    (old,) = cases_json(capsys, owner)
    kept, other = sorted(e.address for e in lab.manifest)
    assert cli(capsys, "owners", "remove", "1", "--database", owner)[0] == 0
    code, out, _ = cli(capsys, "owners", "add", f"{kept[0]}/32", "--name", "Another Clinic", "--contact",
                       "soc@another-clinic.example.org", "--database", owner)
    assert code == 0 and out.startswith("owner 1 added")  # the same id, as SQLite hands it out
    assert cli(capsys, "attribute", "--database", owner)[0] == 0
    cases = {c["id"]: c for c in cases_json(capsys, owner)}
    assert cases[old["id"]]["state"] == "closed"
    code, out, _ = cli(capsys, "case", str(old["id"]), "--database", owner)
    assert "owner entry 1 was removed" in out
    (new,) = [c for c in cases.values() if c["owner_name"] == "Another Clinic"]
    assert new["id"] != old["id"] and new["state"] == "new"
    assert [tuple(s) for s in new["services"]] == [kept]
    outbox = tmp_path / "outbox"
    code, out, err = cli(capsys, "notify", "--dry-run", "--out", str(outbox), "--database", owner)
    assert code == 0, err
    (message,) = [p.read_text() for p in outbox.glob("*.eml")]  # the other server has no contact
    assert "soc@another-clinic.example.org" in message and "Lab Hospital" not in message
    assert other[0] not in message  # the old owner's other server is never named to the new one


def test_an_attribution_of_some_addresses_still_files_every_attributed_address_new_service(owner, capsys,
                                                                                           tmp_path):
    """The attribution after a scan names only some addresses (the scan's, at most
    after_scans_max), and reads only the findings it can act on (service.attribute_async). A
    new service of an address attributed before is one of them: it joins its owner's case
    although this attribution does not name its address."""
    from pacswatch.campaign.scope import contact_check
    from pacswatch.notify.config import load
    from pacswatch.notify.service import attribute
    from pacswatch.store.repository import Repository

    base = f"127.75.{NET}.128"
    with Lab(base, port=0, names=["open-archive"]) as first:
        (old,) = first.manifest
        scan(capsys, first, owner, tmp_path)  # attributed: the owner's case holds it
    with Lab(base, port=0, names=["open-archive"]) as again, \
            Lab(f"127.75.{NET}.160", port=0, names=["open-archive"]) as other:
        (new,) = again.manifest  # the same address, another port
        (elsewhere,) = other.manifest
        assert new.ip == old.ip and new.port != old.port
        targets = [f"{e.ip}:{e.port}" for e in (new, elsewhere)]
        code, _, err = cli(capsys, "scan", *targets, "--database", owner, "--no-progress", "--no-attribute",
                           "-o", str(tmp_path / "again.jsonl"))
        assert code == 0, err
    with Repository.open(owner) as repo:
        done = attribute(repo.engine, load(None), may_contact=contact_check(repo), ips=[elsewhere.ip])
    assert list(done) == [elsewhere.ip]
    (case,) = cases_json(capsys, owner)
    assert sorted(map(tuple, case["services"])) == sorted([old.address, new.address, elsewhere.address])
    assert violations() == []
