"""A database that stops taking records stops the scan with its reason, and the scan is left
resumable (interrupted), not finished and not 'running'."""

from __future__ import annotations

import os

import pytest
from rich.console import Console

from pacswatch.campaign.scanrun import execute, plan_from_parameters, start_scan
from pacswatch.campaign.scope import campaign_blocklist, campaign_scope
from pacswatch.lab.fast import FastResponder, loopback_addresses
from pacswatch.probes.base import ProbeOptions, Timeouts
from pacswatch.probes.registry import ProbeSelector
from pacswatch.scan.job import ScanJob
from pacswatch.store import Repository
from pacswatch.store.errors import StoreError

NET = f"127.57.{os.getpid() % 200}"


@pytest.mark.parametrize("count", [3, 40])  # the failure seen at close(), or by a later record
def test_a_database_refusing_records_stops_the_scan_resumable(tmp_path, count):
    with FastResponder(loopback_addresses(count, f"{NET}.0"), ports=[0], workers=0) as responder, \
            Repository.open(f"sqlite:///{tmp_path / 'refusing.db'}") as repo:
        with repo.engine.begin() as conn:
            conn.exec_driver_sql("CREATE TRIGGER no_obs BEFORE INSERT ON observations "
                                 "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END")
        parameters = {"targets": [f"{ip}:{port}" for ip, port in responder.endpoints], "ports": [], "seed": 1}
        plan = plan_from_parameters(parameters, campaign_blocklist((), ()), campaign_scope(None, ()))
        job = ScanJob(plan=None, probe_for=ProbeSelector().probe_for,
                      options=ProbeOptions(timeouts=Timeouts.scaled(1.0), ae_guess=()), rate=1000, concurrency=4,
                      stderr=Console(stderr=True, quiet=True), show_progress=False, show_summary=False)
        scan_id = start_scan(repo, plan, parameters)
        with pytest.raises(StoreError, match="refused by the test trigger"):
            execute(repo, scan_id, plan, job, batch=5, flush_interval=0.05)
        assert repo.scan(scan_id)["status"] == "interrupted"
        assert len(repo.completed(scan_id)) == 0  # nothing counted done: a resume probes them all
