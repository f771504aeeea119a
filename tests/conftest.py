"""Session-wide test settings: no test touches the user's real pacswatch database."""

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
