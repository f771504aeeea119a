"""The database: SQLAlchemy Core tables, one repository, Alembic migrations. SQLite by default.

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

# The notification tables live on the same metadata; importing them here means every user of
# the store sees the whole schema that the migrations create.
from pacswatch.store import notify_tables  # noqa: E402,F401  isort: skip

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
