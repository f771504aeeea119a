"""The trap rule is written twice, of necessity: in Python for one finding (deception.is_trap:
notices, exports, the demo) and in SQL for counts over many (store/stats.trap_clause: `stats`,
the dashboard's overview). They must agree on every combination."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

from sqlalchemy import create_engine, insert, select

from pacswatch.deception import is_trap
from pacswatch.store.stats import trap_clause
from pacswatch.store.tables import findings

VERDICTS = (None, "honeypot", "tarpit")
CONFIDENCES = (None, 0.0, 0.69, 0.7, 0.95)
OVERRIDES = (None, "real", "honeypot")


def test_the_sql_trap_rule_agrees_with_the_python_one():
    engine = create_engine("sqlite://")
    findings.create(engine)
    at = datetime(2026, 12, 6, tzinfo=timezone.utc)
    combos = list(itertools.product(VERDICTS, CONFIDENCES, OVERRIDES))
    with engine.begin() as conn:
        conn.execute(insert(findings), [
            {"id": n, "ip": "127.0.0.1", "port": n, "status": "open", "severity": "high", "first_seen": at,
             "last_seen": at, "reasons": [], "deception_verdict": v, "deception_confidence": c,
             "deception_override": o} for n, (v, c, o) in enumerate(combos, 1)])
        for threshold in (0.0, 0.7, 1.0):
            in_sql = set(conn.execute(select(findings.c.id).where(trap_clause(threshold))).scalars())
            in_python = {n for n, (v, c, o) in enumerate(combos, 1) if is_trap(v, c, o, threshold)}
            assert in_sql == in_python, threshold
    engine.dispose()
