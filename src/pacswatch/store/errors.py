"""What can go wrong with the database, as the user should read it.

Every error here is raised *before* anything is written, so the database is left as it was: a
file from a newer pacswatch or a damaged file must never be "repaired" by an older one.
"""

from __future__ import annotations


class StoreError(Exception):
    """The database cannot be used; the message says why and what to do."""


class NotADatabase(StoreError):
    """The file is not an SQLite database, or it is damaged or truncated."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer pacswatch than this one."""


class SchemaTooOld(StoreError):
    """The database needs `pacswatch db upgrade` before this pacswatch can use it."""


class NotPacswatch(StoreError):
    """The database has tables but is not one of ours: we will not add tables to it."""


class UnsupportedDatabase(StoreError):
    """A database URL for a backend or driver pacswatch does not use (or no URL at all)."""


class ScanNotResumable(StoreError):
    """`scan --resume ID` names a scan that is finished, unknown, running, or whose plan changed."""
