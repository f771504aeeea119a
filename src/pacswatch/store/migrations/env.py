"""Alembic environment: runs on the connection pacswatch hands over (`config.attributes`), or on
`sqlalchemy.url` when Alembic's own command line is pointed at this directory by a developer."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from pacswatch.store.schema import metadata

config = context.config


def _run(connection) -> None:
    # SQLite cannot ALTER most things in place: batch mode copies the table instead.
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:  # store/engine.py always gives a connection or a URL
        raise RuntimeError("alembic: neither a connection nor sqlalchemy.url was given")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()
