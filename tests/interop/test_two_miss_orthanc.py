"""Findings that do not flap, against a real Orthanc stopped and started (issue 12, item 2).

Each look is a real DICOM probe of the Orthanc (or of its closed port) stored as a scan, on
SQLite and PostgreSQL: one miss while Orthanc is down leaves the finding open with
missed_since; a second miss sooner than confirm_fixed_after changes nothing; a second miss that
late (here 0) fixes it; Orthanc back reopens it; a later miss is cleared when it answers again.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from loopback import free_port
from servers import OrthancServer

from pacswatch.findings.lifecycle import explain
from pacswatch.findings.schedule import RescanPolicy
from pacswatch.store.repository import Repository

pytestmark = pytest.mark.timeout(300)
WAIT_LONG = RescanPolicy(confirm_fixed_after=timedelta(hours=1))
NO_WAIT = RescanPolicy(confirm_fixed_after=timedelta(0))


@pytest.fixture
def orthanc(request, interop_pool, interop_dir, bind_shim, fake_files):
    """An Orthanc of this test's own (the session's are shared), on fixed ports so that it comes
    back where it was, with its storage kept across restarts; C-FIND open to anyone."""
    ip = interop_pool.next()
    dicom_port = free_port(ip)
    http_port = free_port(ip)
    while http_port == dicom_port:
        http_port = free_port(ip)
    server = OrthancServer(ip, dicom_port=dicom_port, http_port=http_port, workdir=interop_dir / request.node.name,
                           bind_shim=bind_shim, load=fake_files, keep_storage=True,
                           config_overrides={"DicomAlwaysAllowFind": True})
    server.start()
    yield server
    server.stop()


def look(repo: Repository, run_probe, server, policy: RescanPolicy | None = None):
    """Probe the Orthanc's DICOM port once and store the record as one scan; (scan id, record)."""
    record = run_probe(server.ip, server.port, ae_guess=())
    scan_id = repo.create_scan(kind="rescan", parameters={}, seed=1, fingerprint="f", targets_key="orthanc",
                               plan_size=1)
    repo.ingest(scan_id, [(0, record)], policy=policy)
    repo.finish_scan(scan_id, "finished")
    return scan_id, record


def finding(repo):
    (row,) = repo.findings()
    return row


def test_a_finding_survives_one_scan_while_orthanc_is_down(repo, run_probe, orthanc):
    first, record = look(repo, run_probe, orthanc)
    assert record.severity == "critical" and finding(repo)["status"] == "open"

    orthanc.stop()
    down, record = look(repo, run_probe, orthanc)
    assert record.status == "connection-refused"
    row = finding(repo)
    assert row["status"] == "open" and row["missed_since"] == record.scanned_at and row["fixed_at"] is None
    (service,) = repo.services()
    assert service["next_due"] == record.scanned_at + RescanPolicy().confirm_fixed_after  # the confirmation

    too_soon, _ = look(repo, run_probe, orthanc, WAIT_LONG)  # a second miss, but not an hour later
    assert finding(repo)["status"] == "open"
    confirmed, record = look(repo, run_probe, orthanc, NO_WAIT)
    row = finding(repo)
    assert row["status"] == "fixed" and row["fixed_at"] == record.scanned_at and row["missed_since"] is None

    orthanc.start()
    back, record = look(repo, run_probe, orthanc)
    row = finding(repo)
    assert record.severity == "critical"
    assert row["status"] == "reopened" and row["reopen_count"] == 1 and row["first_seen"] < row["last_seen"]

    orthanc.stop()
    missed, _ = look(repo, run_probe, orthanc)
    assert finding(repo)["missed_since"] is not None
    orthanc.start()
    again, _ = look(repo, run_probe, orthanc)
    row = finding(repo)
    assert row["status"] == "reopened" and row["missed_since"] is None  # cleared, not a second reopen

    events = repo.events()
    assert [(e["kind"], e["scan_id"]) for e in events] == [
        ("new", first), ("missed", down), ("fixed", confirmed), ("reopened", back), ("missed", missed),
        ("seen-again", again)]
    assert too_soon not in {e["scan_id"] for e in events}
    why = explain(events)
    assert why[1] == f"missed by scan {down} (connection-refused); still open until a second miss confirms it"
    assert why[2].startswith(f"fixed after a second miss by scan {confirmed} (connection-refused), ")
    assert why[2].endswith(f" after the first by scan {down}")
    assert why[5].startswith(f"seen again by scan {again}, ")
