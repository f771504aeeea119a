"""Every store test runs on SQLite and on a real PostgreSQL started on loopback for the session."""

import pytest

from pacswatch.store.throwaway import database_url as _database_url
from pacswatch.store.throwaway import session_server


@pytest.fixture(scope="session")
def postgres(request):
    return session_server(request.config)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    return _database_url(request.param, tmp_path, request.config)


@pytest.fixture
def repo(database_url):
    from pacswatch.store import Repository

    with Repository.open(database_url) as repository:
        yield repository
