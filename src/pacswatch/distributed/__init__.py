"""Distributed scans: a scan's seeded plan cut into shards (`shards`), each a Celery task
(`tasks`) that a worker runs with the same asyncio runner and stores through the same ingest, on
a Redis broker (`app`) and one PostgreSQL database. See docs/design.md and README "Distributed
scans"."""
