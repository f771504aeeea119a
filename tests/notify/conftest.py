import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for extra in (_TESTS, _TESTS / "attribution"):  # fakedata, loopback_servers (tests/ is not a package)
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from loopback_servers import loopback_only  # noqa: E402
from smtp_servers import SmtpServer  # noqa: E402


@pytest.fixture(autouse=True)
def _loopback_only():
    with loopback_only():
        yield


@pytest.fixture
def smtp_server():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """The notify tables on SQLite and on a real PostgreSQL on loopback (the store's throwaway
    server, shared with tests/store for the session)."""
    from pacswatch.store.engine import open_database
    from pacswatch.store.throwaway import database_url

    eng = open_database(database_url(request.param, tmp_path, request.config))
    yield eng
    eng.dispose()
