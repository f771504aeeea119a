"""Opening the database: where it is, whether it is safe to use, and migrating it.

SQLite by default (a file in the user's data directory, WAL, one writer); PostgreSQL by a URL
in `--database` or PACSWATCH_DATABASE_URL. Before anything is written, the file is checked
(header, size) and its schema revision read on a read-only connection: a damaged file or one
from a newer pacswatch raises a StoreError and stays byte for byte as it was. Setting WAL mode
writes to the header, so it only happens after these checks pass.
"""

from __future__ import annotations

import os
import re
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from pacswatch.store.errors import (
    NotADatabase,
    NotPacswatch,
    SchemaTooNew,
    SchemaTooOld,
    StoreError,
    UnsupportedDatabase,
)
from pacswatch.store.tables import json_dumps

ENV_URL = "PACSWATCH_DATABASE_URL"
MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_MAGIC = b"SQLite format 3\x00"


def default_sqlite_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("pacswatch", appauthor=False)) / "pacswatch.db"


def resolve_url(explicit: str | None = None) -> str:
    """--database, else PACSWATCH_DATABASE_URL, else the SQLite file in the user's data dir.

    A bare path means an SQLite file; `postgresql://` and `postgres://` mean psycopg 3, the
    driver pacswatch depends on (SQLAlchemy's default would be psycopg2).
    """
    url = explicit or os.environ.get(ENV_URL) or ""
    if not url:
        return f"sqlite:///{default_sqlite_path()}"
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().absolute()}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
            break
    return _supported(url)


# The backends and drivers pacswatch is built and tested for; anything else would fail later,
# deep in SQLAlchemy or a driver import, with a traceback instead of a sentence.
SUPPORTED = {"sqlite": ("pysqlite",), "postgresql": ("psycopg",)}


def _supported(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UnsupportedDatabase(f"{url.split('@')[-1]!r} is not a database URL: give a file path (SQLite), "
                                  "sqlite:///FILE or postgresql://USER@HOST/DATABASE") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if driver not in SUPPORTED.get(backend, ()):
        raise UnsupportedDatabase(f"pacswatch stores in SQLite or PostgreSQL (with psycopg 3), not {backend}+{driver} "
                                  f"({parsed.render_as_string(hide_password=True)}): give a file path, "
                                  "sqlite:///FILE or postgresql://USER@HOST/DATABASE")
    if backend == "sqlite" and (parsed.host or parsed.port or parsed.username):
        # sqlite://tmp/x.db: "tmp" is read as a host, which SQLite has none of.
        raise UnsupportedDatabase(
            f"{mask_passwords(url)} has a host part ({parsed.host!r}), which an SQLite URL cannot have: write "
            f"sqlite:///relative/path.db (three slashes, from the current directory) or "
            f"sqlite:////absolute/path.db (four), or just the file path")
    return url


# userinfo with a password in any URL (scheme://user:password@host), and password=... in a query
# string or a libpq key=value string. Greedy up to the last "@": a password with a raw "@" in it
# is invalid in a URL, but people type it, and it must not leak either.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<secret>\S*)@")
_PARAM_PASSWORD = re.compile(r"(?P<head>\bpassword=)(?P<secret>[^&\s]*)", re.IGNORECASE)
MASK = "***"


def mask_passwords(text: str) -> str:
    """`text` with every password in a URL or a password=... parameter replaced by ***:
    for what is stored (a scan's command line) and every message that repeats a URL."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _PARAM_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def masked_command(argv: list[str]) -> str:
    """A command line to store and show, with its passwords masked."""
    return " ".join(mask_passwords(arg) for arg in argv)


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL; None for PostgreSQL or an in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def display_url(url: str) -> str:
    """The URL without its password, for messages and `db info`."""
    return make_url(url).render_as_string(hide_password=True)


def _url_path_text(url: str) -> str | None:
    """The path as written after sqlite:/// (None for a bare path turned into a URL here)."""
    prefix = "sqlite:///"
    return url[len(prefix):] if url.startswith(prefix) else None


def missing_directory(url: str, path: Path) -> str:
    """The error for a database whose directory does not exist: where that is, and, for a
    relative sqlite:/// URL, the absolute one the user may have meant."""
    message = f"{path.parent} does not exist, so the database {path} cannot be there"
    written = _url_path_text(url)
    if written is not None and not written.startswith("/"):
        message += (f"; sqlite:///{written} is a path relative to the current directory "
                    f"({Path.cwd()}): for /{written} write sqlite:////{written} (four slashes)")
    return message + "; create the directory, or pass --create-dirs"


def _check_meant(url: str, path: Path) -> None:
    """A relative sqlite:///tmp/x.db that would create a new file while /tmp/x.db exists was
    almost surely meant as the absolute one: say so rather than start an empty database."""
    written = _url_path_text(url)
    if written is None or written.startswith("/") or path.exists():
        return
    absolute = Path("/" + written)
    if absolute.is_file():
        raise StoreError(f"sqlite:///{written} is the relative path {path}, which does not exist, while {absolute} "
                         f"does: for that database write sqlite:////{written} (four slashes); for a new one here, "
                         f"give the path {path}")


def create_database_directory(url: str | None) -> None:
    """--create-dirs: make the directory of an SQLite database file (PostgreSQL: nothing). A URL
    that is wrong is left for opening the database to report, as for any command."""
    try:
        path = sqlite_path(resolve_url(url))
    except StoreError:
        return
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


# --- checks that never write -----------------------------------------------------------------


def check_sqlite_file(path: Path) -> None:
    """Raise NotADatabase if `path` is not a whole SQLite database; a missing or empty file is
    a new database. Reads the 100-byte header only (https://sqlite.org/fileformat.html, 1.3)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    size = path.stat().st_size
    with open(path, "rb") as fh:
        header = fh.read(100)
    if not header.startswith(SQLITE_MAGIC):
        raise NotADatabase(f"{path} is not an SQLite database (no SQLite header); it was left untouched")
    if len(header) < 100:
        raise NotADatabase(f"{path} is truncated ({size} bytes, shorter than the SQLite header); left untouched")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    change_counter, pages = struct.unpack(">II", header[24:32])
    valid_for = struct.unpack(">I", header[92:96])[0]
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return  # pages may live in the WAL until the next checkpoint: the size proves nothing
    if page_size < 512 or page_size & (page_size - 1):
        raise NotADatabase(f"{path} is damaged (page size {page_size} in its header); left untouched")
    # The page count in the header is trusted only when written by SQLite >= 3.7.0, which sets
    # "version-valid-for" to the change counter at the same time.
    if size % page_size or (valid_for == change_counter and pages and size < pages * page_size):
        raise NotADatabase(
            f"{path} is truncated ({size} bytes; its header says {pages} pages of {page_size}); "
            "it was left untouched: restore it from a backup or move it away")


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands against the migrations this pacswatch ships."""

    kind: str  # empty | current | old | newer | foreign
    current: tuple[str, ...]
    head: str


# The revisions the migrations directory holds, oldest first. Opening a database compares its
# revision with these without importing Alembic (a third of the CLI's start-up); Alembic is
# loaded only to migrate. tests/store checks this list against the migration scripts.
REVISIONS = ("0001_initial", "0002_notify", "0003_missed_since", "0004_settings", "0005_dashboard",
             "0006_web_public", "0007_deception", "0008_distributed", "0009_mark_reason",
             "0010_distributed_plan")


def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def alembic_config(connection: Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def schema_state(connection: Connection) -> SchemaState:
    """Read the Alembic revision (no writes: alembic_version is not created here)."""
    head = REVISIONS[-1]
    tables = [t for t in inspect(connection).get_table_names() if not t.startswith("sqlite_")]
    current: tuple[str, ...] = ()
    if "alembic_version" in tables:
        current = tuple(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if not current:
        return SchemaState("foreign" if tables else "empty", (), head)
    if any(rev not in REVISIONS for rev in current):
        return SchemaState("newer", current, head)
    return SchemaState("current" if current == (head,) else "old", current, head)


def _readonly_sqlite_state(path: Path) -> SchemaState:
    uri = f"file:{quote(str(path))}?mode=ro"
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
    try:
        with engine.connect() as conn:
            return schema_state(conn)
    except DBAPIError as exc:
        if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            # Not damage: SQLite in WAL mode writes FILE-wal and FILE-shm beside the file, even
            # to read, so a read-only file or folder (a backup, a read-only mount) cannot open.
            raise StoreError(
                f"cannot open {path}: the file or its folder is read-only, and SQLite (WAL mode) writes "
                f"{path.name}-wal and {path.name}-shm beside it even to read; copy it somewhere writable "
                "(the database was left untouched)") from exc
        raise NotADatabase(f"{path} is not a usable SQLite database ({exc.orig}); it was left untouched") from exc
    finally:
        engine.dispose()


def _raise_for(state: SchemaState, where: str, *, upgrading: bool) -> None:
    if state.kind == "newer":
        raise SchemaTooNew(
            f"{where} has schema revision {', '.join(state.current)}, newer than this pacswatch knows "
            f"(latest {state.head}): upgrade pacswatch; the database was left untouched")
    if state.kind == "foreign":
        raise NotPacswatch(f"{where} has tables but is not a pacswatch database; it was left untouched")
    if state.kind == "old" and not upgrading:
        raise SchemaTooOld(
            f"{where} has schema revision {', '.join(state.current)}; this pacswatch needs {state.head}: "
            "run `pacswatch db upgrade` (back the database up first)")


# --- opening ---------------------------------------------------------------------------------


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        # We issue BEGIN ourselves (below): the sqlite3 module's implicit transactions would
        # start writers as DEFERRED, and two writers upgrading their locks deadlock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers (queries) do not block the writer
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")  # another process writing: wait, not fail
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn) -> None:
        write = conn.get_execution_options().get("pacswatch_write")
        # A statement that writes many rows (the ingest's INSERTs of 32 rows, store/bulk.py) keeps
        # the pages it changes in a statement journal, to undo itself alone if a constraint fails;
        # past 64 KiB SQLite moves that journal to a temporary file, and a scan's store thread spent
        # a tenth of its CPU in those writes. Writes keep it in memory (a few MB at most); reads
        # keep the default, so a large sort (the dashboard's) may still go to a file.
        conn.exec_driver_sql(f"PRAGMA temp_store={'MEMORY' if write else 'DEFAULT'}")
        # One writer at a time, decided at BEGIN rather than at the first write.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _one_line(error: object) -> str:
    """A driver's message on one line: libpq's spans lines (a newline and a tab before 'Is the
    server running'), which an error line would show as escapes."""
    return " ".join(str(error).split())


def open_database(url: str | None = None, *, upgrade: bool = False) -> Engine:
    """An Engine on a database that is safe to use at the schema this pacswatch ships.

    A new (missing or empty) database is created at the latest revision; a newer, foreign or
    damaged one raises a StoreError before anything is written. An older one: an SQLite file is
    one user's, so it is migrated on open, after a copy is kept beside it
    (`pacswatch.db.before-<revision>`); a PostgreSQL database may be shared with installations
    not yet upgraded, so it waits for `upgrade=True` (`pacswatch db upgrade`).
    """
    url = resolve_url(url)
    path = sqlite_path(url)
    where = str(path) if path is not None else display_url(url)
    if path is not None:
        upgrade = True
        check_sqlite_file(path)
        if path.exists() and path.stat().st_size > 0:
            state = _readonly_sqlite_state(path)
            _raise_for(state, where, upgrading=True)
            if state.kind == "old":
                _keep_copy(path, state)
        elif not path.parent.is_dir():
            if path != default_sqlite_path():
                raise StoreError(missing_directory(url, path))
            path.parent.mkdir(parents=True, exist_ok=True)  # the user's data directory: ours to create
        else:
            _check_meant(url, path)
        engine = create_engine(url, json_serializer=json_dumps)
        _sqlite_pragmas(engine)
    else:
        engine = create_engine(url, json_serializer=json_dumps, pool_pre_ping=True)
    try:
        with engine.connect() as conn:  # a reader: no write lock unless there is work to do
            state = schema_state(conn)
            conn.rollback()
        _raise_for(state, where, upgrading=upgrade)
        if state.kind != "current":
            with engine.connect().execution_options(pacswatch_write=True) as conn:
                with conn.begin():
                    state = schema_state(conn)  # again, under the lock: another process may have won
                    _raise_for(state, where, upgrading=upgrade)
                    if state.kind != "current":
                        from alembic import command

                        command.upgrade(alembic_config(conn), "head")
    except StoreError:
        engine.dispose()
        raise
    except OperationalError as exc:
        engine.dispose()
        raise StoreError(f"cannot open the database {where}: {_one_line(exc.orig)}") from exc
    except DBAPIError as exc:
        engine.dispose()
        raise NotADatabase(f"{where} cannot be used: {_one_line(exc.orig)}") from exc
    return engine


def _keep_copy(path: Path, state: SchemaState) -> Path:
    """A consistent copy (the backup API reads through the WAL) before a migration touches it."""
    target = path.with_name(f"{path.name}.before-{'-'.join(state.current)}")
    source = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
    finally:
        source.close()
    return target


def describe(engine: Engine) -> dict:
    """What `pacswatch db info` prints."""
    with engine.connect() as conn:
        state = schema_state(conn)
    url = engine.url.render_as_string(hide_password=True)
    return {"url": url, "backend": engine.dialect.name, "revision": ",".join(state.current) or None,
            "latest": state.head, "state": state.kind}
