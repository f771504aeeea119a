"""`pacswatch db check`: whether a database that opens is also sound, without changing it.

Opening already refuses what is not a usable pacswatch database (not SQLite, truncated, a
damaged header or schema, a newer or foreign schema). What opening does not read can still be
wrong: a damaged page deep in a table (a disk, a copy made while a scan wrote), or rows that
break what the code assumes (edited by hand, restored in part). This reads everything once:

- SQLite: `PRAGMA integrity_check` (or `quick_check` with `quick`) and `foreign_key_check`;
- both backends: the links that the schema does not declare as foreign keys (a finding and its
  service, each row's last observation, an event's observation), the scans' progress (the
  completed intervals inside the plan, `done` equal to what they count), and the findings'
  lifecycle fields (a known status; `missed_since` only on an active finding, `fixed_at` on
  every closed one).

A scan still marked running whose writer stopped updating it is not damage: it is reported as a
note, with the command that resumes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pacswatch.findings.lifecycle import ACTIVE, STATUSES
from pacswatch.store.repository import Repository

MAX_SHOWN = 5  # SQLite messages or row keys quoted per problem

# (what is wrong, a query counting the rows where it is). The schema declares the scan of an
# observation and the finding of an event as foreign keys; these links it does not.
LINKS = (
    ("findings without a service at their address",
     "SELECT count(*) FROM findings f WHERE NOT EXISTS "
     "(SELECT 1 FROM services s WHERE s.ip = f.ip AND s.port = f.port)"),
    ("services whose last observation is missing",
     "SELECT count(*) FROM services s WHERE s.last_observation_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM observations o WHERE o.id = s.last_observation_id)"),
    ("findings whose last observation is missing",
     "SELECT count(*) FROM findings f WHERE f.last_observation_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM observations o WHERE o.id = f.last_observation_id)"),
    ("finding events whose observation is missing",
     "SELECT count(*) FROM finding_events e WHERE e.observation_id IS NOT NULL AND NOT EXISTS "
     "(SELECT 1 FROM observations o WHERE o.id = e.observation_id)"),
    ("completed-work intervals outside their scan's plan",
     "SELECT count(*) FROM scan_work w JOIN scans s ON s.id = w.scan_id "
     "WHERE w.first_index < 0 OR w.last_index < w.first_index OR w.last_index >= s.plan_size"),
    ("scans whose done count differs from their completed work",
     "SELECT count(*) FROM scans s WHERE s.done <> COALESCE((SELECT sum(w.last_index - w.first_index + 1) "
     "FROM scan_work w WHERE w.scan_id = s.id), 0) AND EXISTS (SELECT 1 FROM scan_work w WHERE w.scan_id = s.id)"),
)


def _sql_list(values) -> str:
    return ", ".join(f"'{v}'" for v in values)  # our own constants, not input


# (what is wrong, a query counting the findings where it is): what findings/lifecycle.py never
# writes, so a row like this was edited by hand or written by something else.
LIFECYCLE = (
    ("findings with a status pacswatch does not know",
     f"SELECT count(*) FROM findings WHERE status NOT IN ({_sql_list(STATUSES)})"),
    ("closed findings still marked as missed (missed_since set)",
     f"SELECT count(*) FROM findings WHERE status NOT IN ({_sql_list(ACTIVE)}) AND missed_since IS NOT NULL"),
    ("closed findings without the time they were closed (fixed_at)",
     f"SELECT count(*) FROM findings WHERE status IN ({_sql_list(s for s in STATUSES if s not in ACTIVE)}) "
     "AND fixed_at IS NULL"),
)


@dataclass(frozen=True)
class Problem:
    what: str
    count: int | None  # rows or messages; None: the check itself could not run
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.what if self.count is None else f"{self.count} {self.what}"


@dataclass
class CheckReport:
    checked: list[str]
    problems: list[Problem]
    notes: list[str]

    @property
    def sound(self) -> bool:
        return not self.problems


def check_database(repo: Repository, *, stale: timedelta, quick: bool = False,
                   now: datetime | None = None, stalled: Callable[[dict], bool] | None = None) -> CheckReport:
    """Read the whole database once and say what is wrong; writes nothing. A check that the
    damage keeps from running is itself a problem, and the others still run. A running scan
    not updated for `stale` (campaign/scanrun.STALE) has lost its writer; `stalled`, when given,
    decides instead (the command passes the rule `scans` shows: on this machine, a process gone)."""
    report = CheckReport([], [], [])
    with repo.engine.connect() as conn:
        if repo.backend == "sqlite":
            pragma = "quick_check" if quick else "integrity_check"
            _run(conn, report, f"SQLite {pragma}", lambda: _sqlite_pages(conn, pragma))
            _run(conn, report, "SQLite foreign_key_check", lambda: _sqlite_foreign_keys(conn))
        for what, query in (*LINKS, *LIFECYCLE):
            _run(conn, report, what, lambda query=query, what=what: _count(conn, what, query))
        at = now or datetime.now(timezone.utc)
        is_stalled = stalled or (lambda scan: at - scan["updated_at"] > stale)
        _run(conn, report, "scans marked running", lambda: _stalled_scans(repo, is_stalled, report.notes))
        conn.rollback()
    return report


def _run(conn: Connection, report: CheckReport, name: str, check) -> None:
    report.checked.append(name)
    try:
        problem = check()
    except DBAPIError as exc:
        conn.rollback()  # PostgreSQL: the failed statement ended the transaction
        problem = Problem(f"{name} could not run: {exc.orig}", None)
    if problem is not None:
        report.problems.append(problem)


def _count(conn: Connection, what: str, query: str) -> Problem | None:
    count = conn.execute(text(query)).scalar_one()
    return Problem(what, count) if count else None


def _sqlite_pages(conn: Connection, pragma: str) -> Problem | None:
    messages = [row[0] for row in conn.exec_driver_sql(f"PRAGMA {pragma}")]
    if messages == ["ok"]:
        return None
    return Problem(f"SQLite {pragma} found damage", len(messages), tuple(messages[:MAX_SHOWN]))


def _sqlite_foreign_keys(conn: Connection) -> Problem | None:
    violations = list(conn.exec_driver_sql("PRAGMA foreign_key_check"))
    if not violations:
        return None
    shown = tuple(f"{table} row {rowid} -> {parent}" for table, rowid, parent, _ in violations[:MAX_SHOWN])
    return Problem("rows whose foreign key points nowhere", len(violations), shown)


def _stalled_scans(repo: Repository, stalled: Callable[[dict], bool], notes: list[str]) -> None:
    for scan in repo.scans(None, statuses=("running",)):  # datetimes in UTC, as the repository gives them
        if stalled(scan):
            notes.append(f"scan {scan['id']} is marked running but its writer stopped at "
                         f"{scan['updated_at']:%Y-%m-%d %H:%M:%SZ} ({scan['done']} of {scan['plan_size']} done): "
                         f"pacswatch scan --resume {scan['id']}")
