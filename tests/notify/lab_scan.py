"""Scan lab endpoints with the real scanner and store the records in the campaign database,
as `pacswatch scan` would: the records the notification tests start from."""

from __future__ import annotations

import io
import os

from rich.console import Console

from pacswatch.lab.manifest import LabEndpoint
from pacswatch.probes.base import ProbeOptions, Timeouts
from pacswatch.probes.registry import ProbeSelector
from pacswatch.record import Record
from pacswatch.scan.job import ScanJob
from pacswatch.store.repository import Repository
from pacswatch.targets import ListPlan


def scan(endpoints: list[tuple[str, int]], *, web_ports: frozenset[int] = frozenset()) -> list[Record]:
    records: list[Record] = []
    job = ScanJob(plan=ListPlan(endpoints), probe_for=ProbeSelector(web_ports=web_ports).probe_for,
                  options=ProbeOptions(timeouts=Timeouts.scaled(2.0)), concurrency=max(1, len(endpoints)), rate=0,
                  stderr=Console(file=io.StringIO()), show_progress=False, show_summary=False,
                  on_record=lambda _i, r: records.append(r))
    job.run()
    return records


def scan_and_store(repo: Repository, endpoints: list[tuple[str, int]], policy=None, *, shift=None, **kw) -> list[Record]:
    """`shift` (a timedelta) moves the records' times, for a rescan on a later day of a test's clock."""
    records = scan(endpoints, **kw)
    if shift is not None:
        records = [r.model_copy(update={"scanned_at": r.scanned_at + shift}) for r in records]
    key = os.urandom(8).hex()
    scan_id = repo.create_scan(kind="scan", parameters={"test": True}, seed=1, fingerprint=key, targets_key="lab",
                               plan_size=len(endpoints))
    repo.ingest(scan_id, list(enumerate(records)), policy=policy)
    repo.finish_scan(scan_id, "finished")
    return records


def lab_endpoints(manifest: list[LabEndpoint]) -> list[tuple[str, int]]:
    return [e.address for e in manifest]
