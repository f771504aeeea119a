"""The database: SQLAlchemy Core tables (the whole schema in `schema`), Alembic migrations, and
the repository of scans and findings (`Repository`; notify/store.py's NotifyStore holds the rows
of attribution and notification). SQLite by default.

    repo = Repository.open()                  # --database / PACSWATCH_DATABASE_URL / user data dir
    scan_id = repo.create_scan(...); repo.ingest(scan_id, [(index, record), ...], work=done)
    repo.findings(severities=["critical"]), repo.history(...), repo.stats()
"""

from pacswatch.store.engine import ENV_URL, default_sqlite_path, open_database, resolve_url
from pacswatch.store.errors import (
    NotADatabase,
    NotPacswatch,
    ScanNotResumable,
    SchemaTooNew,
    SchemaTooOld,
    StoreError,
)
from pacswatch.store.repository import Repository

__all__ = [
    "ENV_URL",
    "NotADatabase",
    "NotPacswatch",
    "Repository",
    "ScanNotResumable",
    "SchemaTooNew",
    "SchemaTooOld",
    "StoreError",
    "default_sqlite_path",
    "open_database",
    "resolve_url",
]
