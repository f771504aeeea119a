"""Session-wide test settings and the database fixtures the store, campaign and CLI tests share.

No test touches the user's real pacswatch database. Tests that take `database_url` or `repo` run
on SQLite and on a real PostgreSQL started on loopback once per session (store/throwaway.py)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_database(tmp_path_factory):
    # Every `pacswatch scan` is stored; without this, CLI tests (and their subprocesses, which
    # inherit the environment) would write into ~/.local/share/pacswatch.
    path = tmp_path_factory.mktemp("pacswatch-db") / "pacswatch.db"
    old = os.environ.get("PACSWATCH_DATABASE_URL")
    os.environ["PACSWATCH_DATABASE_URL"] = str(path)
    yield
    if old is None:
        os.environ.pop("PACSWATCH_DATABASE_URL", None)
    else:
        os.environ["PACSWATCH_DATABASE_URL"] = old


@pytest.fixture(scope="session")
def postgres(request):
    from pacswatch.store.throwaway import session_server

    return session_server(request.config)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    from pacswatch.store.throwaway import database_url as url

    return url(request.param, tmp_path, request.config)


@pytest.fixture
def repo(database_url):
    from pacswatch.store import Repository

    with Repository.open(database_url) as repository:
        yield repository
