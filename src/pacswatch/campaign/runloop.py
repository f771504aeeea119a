"""`pacswatch run`: rescan what is due, for as long as it runs.

Each cycle first finishes rescans that a previous run left unfinished (stopped, crashed), then
takes up to `batch` services whose next look is due (schedule.RescanPolicy set it when they
were last seen) and rescans them as one scan of pinned endpoints, under the current opt-out
list, scope and rate limits (the plan is built by the same code as `scan`'s). All state is in
the database, so the process can be stopped and started at any time: what was done is not
redone, what was due is still due.

A run says what it does: one line per pass (what was due, what was probed, what changed, when
the next service falls due), and, at start, how many services it re-planned because its
intervals differ from those that scheduled them. `rescan_now` looks at chosen services at once.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping, Sequence

from pacswatch.findings.lifecycle import ACTIVE, SEVERITY_RANK, span_text
from pacswatch.campaign.report import endpoint, when
from pacswatch.campaign.scanrun import ScanOutcome, check_resumable, check_same_plan, execute, start_scan
from pacswatch.findings.schedule import POLICY_SETTING, RescanPolicy
from pacswatch.findings.triage import held_services
from pacswatch.store.errors import ScanNotResumable
from pacswatch.store.repository import Repository
from pacswatch.targets import Blocklist, ScanPlan


def _now() -> datetime:
    return datetime.now(timezone.utc)


_NOT_YET = object()  # no idle line said yet


@dataclass(frozen=True)
class Selector:
    """What `run --now` rescans: services in `matcher` (a Blocklist of the networks named, or
    None for any address), on `port` if given, whose active finding has one of `severities`
    (any, or none at all, when empty)."""

    matcher: Blocklist | None = None  # the networks named; None: any address
    port: int | None = None
    severities: frozenset[str] = frozenset()

    def matches(self, service: Mapping, finding: Mapping | None) -> bool:
        if self.matcher is not None and self.matcher.reason_for(service["ip"]) is None:
            return False
        if self.port is not None and service["port"] != self.port:
            return False
        if self.severities:
            return finding is not None and finding["status"] in ACTIVE and finding["severity"] in self.severities
        return True


def parse_selector(text: str, severities: Iterable[str] = ()) -> Selector:
    """`run --now [SELECTOR] [--severity LIST]`: SELECTOR is an address, ADDRESS:PORT, a CIDR or
    a range ('' for any address); LIST items are comma-separated severities. ValueError with a
    reason otherwise. Names are refused: services are stored by address, and looking a name up
    to choose what to rescan would send a query the operator did not ask for."""
    from pacswatch.targets import BlockEntry, parse_spec

    chosen = frozenset(v.strip().lower() for item in severities for v in item.split(",") if v.strip())
    if unknown := sorted(chosen - set(SEVERITY_RANK)):
        raise ValueError(f"unknown severity {', '.join(unknown)}: choose from {', '.join(SEVERITY_RANK)}")
    if not text.strip():
        if not chosen:
            raise ValueError("run --now needs a SELECTOR (an address, ADDRESS:PORT, CIDR or range), --severity, or both")
        return Selector(severities=chosen)
    spec = parse_spec(text)
    if spec.name is not None:
        raise ValueError(f"run --now takes addresses, CIDRs and ranges, not a host name ({spec.name!r})")
    if spec.span is not None:
        span = spec.span
    else:
        assert spec.ip is not None  # parse_spec gives an address where it gives no span
        span = (spec.ip.version, int(spec.ip), int(spec.ip))
    return Selector(Blocklist([BlockEntry(span, text.strip())]), spec.port, chosen)


def select_services(services: Iterable[Mapping], findings: Iterable[Mapping], selector: Selector) -> list[Mapping]:
    """The services `selector` names, in the order given."""
    by_key = {(f["ip"], f["port"]): f for f in findings}
    return [s for s in services if selector.matches(s, by_key.get((s["ip"], s["port"])))]


def pass_line(at: datetime, due: int, outcome: ScanOutcome | None, next_due: datetime | None) -> str:
    """One line for one pass of `run`: what was due, probed and changed, and when the next
    service falls due."""
    parts = [f"pass {when(at)}: {due} {outcome.extra.get('why', 'due') if outcome is not None else 'due'}"]
    if outcome is not None:
        stats = outcome.stats
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(stats.by_status.items(), key=lambda kv: -kv[1]))
        parts.append(f"{stats.done} probed" + (f" ({statuses})" if statuses else "")
                     + f" by rescan {outcome.scan_id}" + (" (resumed)" if outcome.extra.get("resumed") else "")
                     + ("" if outcome.status == "finished" else f", {outcome.status}"))
        parts.append(f"changes: {change_words(outcome.changes)}")
    parts.append(f"next due {when(next_due)}" if next_due is not None else "nothing scheduled")
    return "; ".join(parts)


def change_words(changes) -> str:
    words = [(changes.new, "new"), (changes.missed, "missed once (open until confirmed)"),
             (changes.fixed, "fixed"), (changes.seen_again, "seen again after a miss"),
             (changes.reopened, "reopened"), (changes.raised, "severity up"), (changes.lowered, "severity down")]
    return ", ".join(f"{n} {word}" for n, word in words if n) or "none"


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
    # How a rescan runs: here (scanrun.execute), or on distributed workers (sharded.executor).
    executor: Callable[..., ScanOutcome] = execute

    def _execute(self, scan_id: int, plan: ScanPlan, parameters: dict, **extra) -> ScanOutcome:
        outcome = self.executor(self.repo, scan_id, plan, self.make_job(parameters), policy=self.policy)
        outcome.extra.update(extra)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def replan(self) -> int:
        """When this run's policy differs from the one that scheduled the services (kept in the
        database), schedule every service again under this one, keep it, and say how many moved."""
        current = self.policy.to_json()
        if RescanPolicy.from_json(self.repo.setting(POLICY_SETTING)).to_json() == current:
            return 0
        changed = self.repo.replan(self.policy)
        self.repo.set_setting(POLICY_SETTING, current)
        self.log(f"intervals changed: re-planned {changed} service(s) under this run's "
                 f"({', '.join(f'{k} {span_text(v)}' for k, v in self.policy.intervals.items())}; "
                 f"a miss is confirmed after {span_text(self.policy.confirm_fixed_after)})")
        return changed

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
            left = scan["plan_size"] - scan["done"]
            self.log(f"resuming rescan {scan['id']} ({left} endpoints left)")
            outcome = self._execute(scan["id"], plan, scan["parameters"], due=left, resumed=True)
            if outcome.status != "finished":
                return outcome
        return outcome

    def _rescan(self, services: Sequence[Mapping], command: str, why: str = "due") -> ScanOutcome:
        parameters = {**self.parameters, "targets": [endpoint(s["ip"], s["port"]) for s in services], "ports": [],
                      "masscan": [], "zmap": [], "seed": secrets.randbits(63)}
        # The same plan as `scan`'s: today's opt-out list, blocklist and scope refuse what they
        # must (a `blocked` record), so nothing is contacted that a scan would not contact.
        plan = self.build_plan(parameters)
        scan_id = start_scan(self.repo, plan, parameters, kind="rescan", command=command)
        self.log(f"rescan {scan_id}: {len(services)} services {why}")
        return self._execute(scan_id, plan, parameters, due=len(services), why=why)

    def rescan_due(self) -> ScanOutcome | None:
        """One rescan of up to `batch` due services; None when nothing is due. A service whose
        finding a person suppressed until a date is not due before that date (findings/triage.py);
        one marked a false positive is, so that a change is seen."""
        now = self.clock()
        held = held_services(self.repo.triage(), now)
        due = self.repo.services(due_before=now, limit=self.batch, held=held)
        if not due:
            return None
        return self._rescan(due, "pacswatch run")

    def rescan_now(self, selector: Selector) -> list[ScanOutcome]:
        """Rescan at once every known service `selector` names (in rescans of up to `batch`),
        whatever their next look; [] when none matches. Stops at an interrupted rescan."""
        findings = self.repo.findings(statuses=ACTIVE) if selector.severities else []
        chosen = select_services(self.repo.services(), findings, selector)
        outcomes = []
        for start in range(0, len(chosen), self.batch):
            outcome = self._rescan(chosen[start:start + self.batch], "pacswatch run --now", "asked for (--now)")
            outcomes.append(outcome)
            self.log(self.line(outcome))
            if outcome.status != "finished":
                break
        return outcomes

    def cycle(self) -> ScanOutcome | None:
        outcome = self.resume_unfinished()
        if outcome is not None and outcome.status != "finished":
            return outcome
        return self.rescan_due() or outcome

    def next_due(self) -> datetime | None:
        held = held_services(self.repo.triage(), self.clock())
        upcoming = self.repo.services(limit=1, held=held)
        # A held service falls due when its suppression ends, at the earliest.
        times = [*(u["next_due"] for u in upcoming), *held.values()]
        return min(times) if times else None

    def line(self, outcome: ScanOutcome | None, next_due: datetime | None = None) -> str:
        due = outcome.extra.get("due", 0) if outcome is not None else 0
        return pass_line(self.clock(), due, outcome, next_due or self.next_due())

    def forever(self, *, once: bool = False) -> bool:
        """Cycle until stopped; True if a scan was interrupted (Ctrl-C, SIGTERM). One line per
        pass that probed something; an idle pass only when the next due time is news."""
        said: object = _NOT_YET  # the next due time the last line gave
        while not self.stop.is_set():
            outcome = self.cycle()
            next_due = self.next_due()
            if outcome is not None or next_due != said or once:
                self.log(self.line(outcome, next_due) if outcome is not None
                         else pass_line(self.clock(), 0, None, next_due))
                said = next_due
            if outcome is not None and outcome.stats.interrupted:
                return True
            if once:
                return False
            if outcome is None:  # nothing was due: wait, but wake at once when stopped
                self.stop.wait(self.tick)
        return False
