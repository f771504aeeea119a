"""Alembic migrations, shipped inside the package so that `pacswatch db upgrade` works from an
installed copy: pacswatch.store.engine builds the Alembic config in code (no alembic.ini)."""
