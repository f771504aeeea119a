"""The whole schema: every table the migrations create, on one metadata.

store/tables.py (scans, observations, services, findings, opt-outs, scope, settings,
distributed shards and workers) and
store/notify_tables.py (owners, attribution, cases, outbox) and store/web_tables.py (the
dashboard's users, sessions, API tokens, triage) and store/web_public_tables.py (opt-out
requests, verify checks) define their tables on one
`MetaData`. This module imports both and names each table, so that what compares with the whole
schema (the Alembic environment, tests/store/test_store_schema.py) takes it from here, and no
module is imported only for the tables it adds.
"""

from __future__ import annotations

from pacswatch.store import notify_tables, tables, web_public_tables, web_tables

TABLES = (
    tables.scans,
    tables.scan_work,
    tables.observations,
    tables.services,
    tables.findings,
    tables.finding_events,
    tables.optouts,
    tables.scope_entries,
    tables.settings,
    tables.shards,
    tables.workers,
    tables.scan_inputs,
    notify_tables.owners,
    notify_tables.attribution_facts,
    notify_tables.attributions,
    notify_tables.cases,
    notify_tables.case_services,
    notify_tables.case_events,
    notify_tables.outbox,
    web_tables.users,
    web_tables.web_sessions,
    web_tables.api_tokens,
    web_tables.finding_triage,
    web_tables.scan_exposure,
    web_public_tables.optout_requests,
    web_public_tables.verify_checks,
)

metadata = tables.metadata
