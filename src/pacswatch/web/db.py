"""Connections for the dashboard's requests, as the store's repository opens them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """One write transaction. On SQLite it begins IMMEDIATE (store/engine.py): two writers that
    both start as readers and then upgrade their locks would deadlock."""
    with engine.connect() as conn:
        conn.execution_options(pacswatch_write=True)
        with conn.begin():
            yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """One read transaction: a page's queries see one state of the database."""
    with engine.connect() as conn:
        with conn.begin():
            yield conn
