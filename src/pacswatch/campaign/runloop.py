"""`pacswatch run`: rescan what is due, for as long as it runs.

Each cycle first finishes rescans that a previous run left unfinished (stopped, crashed), then
takes up to `batch` services whose next look is due (schedule.RescanPolicy set it when they
were last seen) and rescans them as one scan of pinned endpoints, under the current opt-out
list, scope and rate limits. All state is in the database, so the process can be stopped and
started at any time: what was done is not redone, what was due is still due.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from pacswatch.campaign.report import endpoint
from pacswatch.campaign.scanrun import ScanOutcome, check_resumable, check_same_plan, execute, start_scan
from pacswatch.campaign.schedule import RescanPolicy
from pacswatch.store.errors import ScanNotResumable
from pacswatch.store.repository import Repository
from pacswatch.targets import ScanPlan


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class RunLoop:
    repo: Repository
    # A fresh ScanJob that probes as a scan's stored parameters say (execute sets its plan): a
    # rescan resumed by a later `run` keeps the probe settings it started with, whatever this
    # run's are, so that one scan never mixes two ways of probing.
    make_job: Callable[[dict], object]
    build_plan: Callable[[dict], ScanPlan]  # parameters -> plan, with today's blocklist and scope
    parameters: dict  # probe settings stored with every rescan, so that it can be resumed
    policy: RescanPolicy = field(default_factory=RescanPolicy)
    batch: int = 1000
    tick: float = 60.0
    clock: Callable[[], datetime] = _now
    log: Callable[[str], None] = print
    on_outcome: Callable[[ScanOutcome], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def _execute(self, scan_id: int, plan: ScanPlan, parameters: dict) -> ScanOutcome:
        outcome = execute(self.repo, scan_id, plan, self.make_job(parameters), policy=self.policy)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def resume_unfinished(self) -> ScanOutcome | None:
        """Finish rescans left by an earlier run; the outcome of the last one, if any."""
        outcome = None
        for scan in reversed(self.repo.scans(None, kind="rescan", statuses=("running", "interrupted"))):
            try:
                check_resumable(self.repo, scan["id"])
            except ScanNotResumable as exc:  # another `run` is on it: leave it alone
                self.log(f"rescan {scan['id']} skipped: {exc}")
                continue
            try:
                plan = self.build_plan(scan["parameters"])
                check_same_plan(scan, plan)
            except ScanNotResumable as exc:
                self.log(f"rescan {scan['id']} abandoned: {exc}")
                self.repo.finish_scan(scan["id"], "abandoned")
                continue
            self.log(f"resuming rescan {scan['id']} ({scan['plan_size'] - scan['done']} endpoints left)")
            outcome = self._execute(scan["id"], plan, scan["parameters"])
            if outcome.status != "finished":
                return outcome
        return outcome

    def rescan_due(self) -> ScanOutcome | None:
        """One rescan of up to `batch` due services; None when nothing is due."""
        due = self.repo.services(due_before=self.clock(), limit=self.batch)
        if not due:
            return None
        parameters = {**self.parameters, "targets": [endpoint(s["ip"], s["port"]) for s in due], "ports": [],
                      "masscan": [], "zmap": [], "seed": secrets.randbits(63)}
        plan = self.build_plan(parameters)
        scan_id = start_scan(self.repo, plan, parameters, kind="rescan", command="pacswatch run")
        self.log(f"rescan {scan_id}: {len(due)} services due")
        return self._execute(scan_id, plan, parameters)

    def cycle(self) -> ScanOutcome | None:
        outcome = self.resume_unfinished()
        if outcome is not None and outcome.status != "finished":
            return outcome
        return self.rescan_due() or outcome

    def forever(self, *, once: bool = False) -> bool:
        """Cycle until stopped; True if a scan was interrupted (Ctrl-C, SIGTERM)."""
        while not self.stop.is_set():
            outcome = self.cycle()
            if outcome is not None and outcome.stats.interrupted:
                return True
            if once:
                return False
            if outcome is None:  # nothing was due: wait, but wake at once when stopped
                self.stop.wait(self.tick)
        return False
