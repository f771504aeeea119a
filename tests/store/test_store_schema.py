"""Opening the database: migrations match the tables, and a newer, foreign or damaged database
gives a clear error and is left exactly as it was (bytes and modification time)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from pacswatch.store import NotADatabase, NotPacswatch, Repository, SchemaTooNew, StoreError, open_database
from pacswatch.store.engine import SchemaState, _raise_for, describe, resolve_url
from pacswatch.store.errors import SchemaTooOld
from pacswatch.store.schema import TABLES, metadata


def snapshot(path: Path) -> tuple[str, int, int]:
    data = path.read_bytes()
    stat = path.stat()
    return hashlib.sha256(data).hexdigest(), stat.st_size, stat.st_mtime_ns


def test_migrations_create_exactly_the_tables(database_url):
    engine = open_database(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == []
        assert describe(engine)["state"] == "current"
        # schema.py names every table on the metadata (none is there only by being imported).
        assert sorted(t.name for t in TABLES) == sorted(metadata.tables)
    finally:
        engine.dispose()


def test_opening_twice_changes_nothing_and_keeps_data(database_url):
    with Repository.open(database_url) as repo:
        entry = repo.add_optout("127.9.0.0/16", "owner@example.org")
    with Repository.open(database_url) as repo:
        assert [r["id"] for r in repo.optouts()] == [entry]


def test_sqlite_is_in_wal_mode(tmp_path):
    engine = open_database(str(tmp_path / "w.db"))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


def _sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "real.db"
    with Repository.open(str(path)) as repo:
        for n in range(300):  # a few pages, so that truncation has something to cut
            repo.add_optout(f"127.{n % 250}.0.0/16", f"owner{n}@example.org", note="x" * 200)
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    return path


@pytest.mark.parametrize("damage", ["random-bytes", "truncated", "header-garbage", "not-sqlite-text"])
def test_damaged_sqlite_file_is_refused_and_left_untouched(tmp_path, damage):
    path = _sqlite_db(tmp_path)
    data = path.read_bytes()
    if damage == "random-bytes":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "header-garbage":
        path.write_bytes(data[:100] + os.urandom(4096 - 100) + data[4096:])  # the schema page
    else:
        path.write_text("these are not the tables you are looking for\n")
    before = snapshot(path)
    with pytest.raises(NotADatabase) as info:
        open_database(str(path))
    assert str(path) in str(info.value) and "untouched" in str(info.value)
    assert snapshot(path) == before


def test_a_read_only_database_folder_is_named_as_such_not_as_damage(tmp_path):
    # A backup on a read-only mount (as root, whom file modes do not stop) or a folder the user
    # cannot write: SQLite's WAL mode cannot open it even to read. Not "not a usable database".
    import subprocess
    import sys

    folder = tmp_path / "backup"
    folder.mkdir()
    path = _sqlite_db(folder)
    before = snapshot(path)
    opening = f"from pacswatch.store import open_database; open_database({str(path)!r})"
    if os.geteuid() == 0:  # a private mount namespace with the folder bound read-only
        command = ["unshare", "-m", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
                   'exec "$2" -c "$3"', "sh", str(folder), sys.executable, opening]
    else:
        folder.chmod(0o555)
        command = [sys.executable, "-c", opening]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        folder.chmod(0o755)
    assert result.returncode != 0
    assert f"cannot open {path}: the file or its folder is read-only" in result.stderr, result.stderr
    assert "not a usable SQLite database" not in result.stderr
    assert snapshot(path) == before


def test_truncated_to_less_than_a_header(tmp_path):
    path = _sqlite_db(tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    before = snapshot(path)
    with pytest.raises(NotADatabase, match="truncated"):
        open_database(str(path))
    assert snapshot(path) == before


def test_newer_sqlite_schema_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "newer.db"
    open_database(str(path)).dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    conn.close()
    before = snapshot(path)
    for upgrade in (False, True):  # `db upgrade` must not "fix" it either
        with pytest.raises(SchemaTooNew, match="0099_from_the_future.*newer than this pacswatch"):
            open_database(str(path), upgrade=upgrade)
    assert snapshot(path) == before


def test_newer_postgres_schema_is_refused_and_left_untouched(postgres):
    url = postgres.create_database("newer_schema")
    open_database(url).dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
        before = conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")).scalar()
    with pytest.raises(SchemaTooNew):
        open_database(url, upgrade=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0099_from_the_future"
        assert conn.execute(text("SELECT count(*) FROM information_schema.tables "
                                 "WHERE table_schema = 'public'")).scalar() == before
    engine.dispose()


def test_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE patients (name TEXT)")
    conn.close()
    before = snapshot(path)
    with pytest.raises(NotPacswatch):
        open_database(str(path))
    assert snapshot(path) == before


def test_older_schema_asks_for_db_upgrade():
    with pytest.raises(SchemaTooOld, match="pacswatch db upgrade"):
        _raise_for(SchemaState("old", ("0000_older",), "0001_initial"), "x.db", upgrading=False)
    _raise_for(SchemaState("old", ("0000_older",), "0001_initial"), "x.db", upgrading=True)


def _at_first_revision(url):
    from alembic import command

    from pacswatch.store.engine import alembic_config

    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001_initial")
    engine.dispose()


def test_older_sqlite_is_migrated_on_open_with_a_copy_kept(tmp_path):
    from pacswatch.store.engine import _script

    path = tmp_path / "old.db"
    _at_first_revision(f"sqlite:///{path}")
    before = snapshot(path)
    engine = open_database(str(path))
    assert describe(engine)["state"] == "current"
    engine.dispose()
    if _script().get_current_head() != "0001_initial":
        copy = tmp_path / "old.db.before-0001_initial"
        with sqlite3.connect(copy) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001_initial",)]
        conn.close()
        assert snapshot(path) != before


def test_older_postgres_waits_for_db_upgrade(postgres):
    from pacswatch.store.engine import _script

    url = postgres.create_database("older_schema")
    _at_first_revision(url)
    if _script().get_current_head() != "0001_initial":
        with pytest.raises(SchemaTooOld, match="pacswatch db upgrade"):
            open_database(url)
    engine = open_database(url, upgrade=True)
    assert describe(engine)["state"] == "current"
    engine.dispose()


def test_empty_file_is_a_new_database(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    open_database(str(path)).dispose()
    assert path.read_bytes().startswith(b"SQLite format 3\x00")


def test_unreachable_postgres_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot open the database") as raised:
        open_database("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    # One line: libpq's message has a newline and a tab, which an error line shows as \x0a\x09.
    assert "\n" not in str(raised.value) and "\t" not in str(raised.value)
    assert "Connection refused Is the server running" in str(raised.value)


def test_url_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("PACSWATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert resolve_url(None) == f"sqlite:///{tmp_path / 'pacswatch' / 'pacswatch.db'}"
    monkeypatch.setenv("PACSWATCH_DATABASE_URL", "postgresql://u@127.0.0.1/db")
    assert resolve_url(None) == "postgresql+psycopg://u@127.0.0.1/db"
    assert resolve_url("some/file.db").startswith("sqlite:////") and resolve_url("some/file.db").endswith("some/file.db")
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_revision_list_is_the_migration_scripts_in_order():
    """Opening a database reads REVISIONS instead of importing Alembic: it must not drift."""
    from pacswatch.store.engine import REVISIONS, _script

    script = _script()
    walked = tuple(reversed([rev.revision for rev in script.walk_revisions()]))
    assert REVISIONS == walked
    assert REVISIONS[-1] == script.get_current_head()


@pytest.mark.parametrize("url, named", [
    ("mysql://scanner:secret@127.0.0.1/pacs", "mysql+mysqldb"),
    ("postgresql+psycopg2://scanner:secret@127.0.0.1/pacs", "postgresql+psycopg2"),
    ("sqlite+aiosqlite:///pacswatch.db", "sqlite+aiosqlite"),
])
def test_a_database_url_pacswatch_does_not_use_is_one_clear_error(url, named, capsys):
    from pacswatch.cli import main

    assert main(["scans", "--database", url]) == 1
    err = capsys.readouterr().err
    assert f"not {named}" in err and "SQLite or PostgreSQL" in err, err
    assert "secret" not in err and "Traceback" not in err
