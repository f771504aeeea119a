"""The few SQL expressions that SQLite and PostgreSQL spell differently (dates and addresses),
for the dashboard's aggregate queries."""

from __future__ import annotations

import ipaddress

from sqlalchemy import event, func, literal_column
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement


def week_start(column, dialect: str) -> ColumnElement:
    """The Monday (UTC) of the week of a moment, as 'YYYY-MM-DD' text."""
    if dialect == "postgresql":
        return func.to_char(func.date_trunc("week", func.timezone("UTC", column)), "YYYY-MM-DD")
    # SQLite keeps moments as UTC text: 'weekday 0' moves to the Sunday on or after, -6 days to its Monday.
    return func.date(column, "weekday 0", "-6 days")


def day_of(column, dialect: str) -> ColumnElement:
    """The UTC day of a moment as 'YYYY-MM-DD' text (cheaper than week_start per row)."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)  # SQLite keeps moments as 'YYYY-MM-DD HH:MM:SS...' in UTC


def days_between(start, end, dialect: str) -> ColumnElement:
    """end - start in days (a float)."""
    if dialect == "postgresql":
        return func.extract("epoch", end - start) / literal_column("86400.0")
    return func.julianday(end) - func.julianday(start)


def in_network(ip: object, cidr: object) -> int:
    """1 when the address `ip` is in the network `cidr`, else 0 (SQLite's pacswatch_in_network)."""
    try:
        return int(ipaddress.ip_address(str(ip)) in ipaddress.ip_network(str(cidr), strict=False))
    except ValueError:
        return 0


CACHE_KIB = 65536  # 64 MiB of page cache per connection (SQLite's default is 2 MiB)
MMAP_BYTES = 1 << 30


def register_sqlite_functions(engine: Engine) -> None:
    """Give every SQLite connection of `engine` pacswatch_in_network(ip, cidr) (PostgreSQL
    compares addresses as inet instead) and the dashboard's cache settings."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.create_function("pacswatch_in_network", 2, in_network, deterministic=True)
        # The dashboard reads the same pages over and over: a larger page cache per connection
        # and reads through mmap (no copy per page) keep a large database's pages fast.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        cursor.close()
