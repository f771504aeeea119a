"""Many rows, one executemany, without Core's work per row.

`conn.execute(insert(table), rows)` costs about as much CPU in SQLAlchemy as in the database:
per execution a cache key, per row a parameter dict and a bind processor looked up and called
for every value (on SQLite, every datetime becomes a string in Python). A scan stores a few
hundred records per transaction, each touching four tables, and the store shares the GIL with
the scanner, so that work is worth avoiding.

A `BulkStatement` is the same INSERT or UPDATE, compiled once by Core for the engine's dialect,
with each column's own bind processor (the one Core would apply, so the values the database
gets are Core's: tests/store/test_store_bulk.py compares whole tables written both ways). Per
row, what is left is taking the values in order and processing the few that need it. On SQLite,
inserts go in statements of many rows (SQLITE_ROWS), on PostgreSQL through COPY.
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import DateTime, Table, bindparam, insert, update
from sqlalchemy.engine import Connection, Dialect

from pacswatch.store.errors import StoreError

ROW_ID = "b_id"  # the UPDATE's WHERE id = ... parameter, apart from the columns it sets
# SQLite: rows per INSERT statement (VALUES (...), (...), ...), the largest that fit first. The
# sqlite3 module lets go of the GIL around every statement it steps, once per row of an
# executemany, and the scanner's event loop takes it each time: with a row per statement the
# store thread waited for the GIL 27,000 times in a scan of 10,000 endpoints (bench/README.md).
SQLITE_ROWS = (32, 16, 8, 4, 2, 1)


def _memoized(column: Sequence[Any], processor: Callable[[Any], Any], memo: dict) -> tuple:
    """`processor` applied to every datetime of `column`, once per distinct one in the batch
    (`memo`: value -> (zone, processed)): one look's moment fills half a dozen columns. The zone
    is checked, as equal moments in other zones are other wall-clock texts."""
    out = []
    for value in column:
        if value is None:
            out.append(processor(None))
            continue
        hit = memo.get(value)
        if hit is None or hit[0] is not value.tzinfo:
            hit = memo[value] = (value.tzinfo, processor(value))
        out.append(hit[1])
    return tuple(out)


class BulkStatement:
    """kind "insert": every column of `table` but "id" (the database numbers the row);
    "insert-id": every column, "id" too; "update": every column but "id", WHERE id = row["id"].

    Rows are mappings from column key to value; other keys are ignored and a missing column is
    a KeyError (Core would refuse it too), never a silent NULL."""

    def __init__(self, kind: str, table: Table, dialect: Dialect) -> None:
        columns = [c.key for c in table.c if kind == "insert-id" or c.key != "id"]
        if kind == "update":
            compiled = update(table).where(table.c.id == bindparam(ROW_ID)).compile(
                dialect=dialect, column_keys=[*columns, ROW_ID])
            expected = [*columns, ROW_ID]
        elif kind in ("insert", "insert-id"):
            compiled = insert(table).compile(dialect=dialect, column_keys=columns)
            expected = columns
        else:
            raise ValueError(f"unknown statement kind {kind!r}")
        names = list(compiled.positiontup or ()) if dialect.positional else list(compiled.binds)
        # Only values we give: a column default or SQL expression, which Core would fill in per
        # row, would otherwise be quietly left out.
        if sorted(names) != sorted(expected):
            raise StoreError(f"{kind} {table.name}: the statement takes {names}, not the columns {expected}")
        self.sql = str(compiled)
        self.names = tuple(names)
        self.positional = dialect.positional
        # PostgreSQL: inserts go through COPY, several times faster than an executemany of
        # INSERTs (a distributed scan's workers all store into one server). The values are the
        # same, processed by the same bind processors; COPY FROM STDIN in text format casts each
        # to its column as INSERT's parameters are.
        self.copy_sql = (f"COPY {dialect.identifier_preparer.format_table(table)} "
                         f"({', '.join(dialect.identifier_preparer.quote(n) for n in names)}) FROM STDIN"
                         if dialect.name == "postgresql" and kind != "update" else None)
        head, _, group = self.sql.rpartition(" VALUES ")
        self._sqlite_sql = ({n: f"{head} VALUES {', '.join([group] * n)}" for n in SQLITE_ROWS}
                            if dialect.name == "sqlite" and kind != "update" else None)
        self._values = itemgetter(*("id" if n == ROW_ID else n for n in names))
        # (position, processor, memo key): a datetime is memoized per batch, because one look's
        # moment fills half a dozen columns; the key is the type's implementation for this
        # dialect, one object shared by every column of that type.
        self._processors: list[tuple[int, Callable[[Any], Any], object | None]] = []
        for position, name in enumerate(names):
            if name == ROW_ID:
                continue
            impl = table.c[name].type.dialect_impl(dialect)
            processor = impl.bind_processor(dialect)
            if processor is not None:
                self._processors.append((position, processor, impl if isinstance(impl, DateTime) else None))

    def parameters(self, rows: Sequence[Mapping[str, Any]], memo: dict, *, as_tuples: bool = False) -> list:
        """The executemany parameters of `rows` (tuples in `names` order with `as_tuples`);
        `memo` holds processed datetimes (one per batch)."""
        values = list(map(self._values, rows))  # a tuple per row, in `names` order
        if self._processors and values:
            # Column by column: a processor's loop is then one comprehension over its column,
            # not a row's tuple taken apart and put together again.
            columns = list(zip(*values))
            for position, processor, memo_key in self._processors:
                column = columns[position]
                if memo_key is None:
                    columns[position] = tuple([processor(value) for value in column])
                else:
                    columns[position] = _memoized(column, processor, memo.setdefault(memo_key, {}))
            values = list(zip(*columns))
        if self.positional or as_tuples:
            return values
        return [dict(zip(self.names, row)) for row in values]

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]], memo: dict) -> None:
        if not rows:
            return
        if self._sqlite_sql is not None:  # a few statements of many rows each
            values, start = self.parameters(rows, memo), 0
            for n in SQLITE_ROWS:
                end = start + (len(values) - start) // n * n
                if end > start:
                    conn.exec_driver_sql(self._sqlite_sql[n], [tuple(chain.from_iterable(values[i:i + n]))
                                                               for i in range(start, end, n)])
                    start = end
            return
        if self.copy_sql is None:
            conn.exec_driver_sql(self.sql, self.parameters(rows, memo))
            return
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]  # psycopg's, this transaction's
        with cursor, cursor.copy(self.copy_sql) as copy:
            for values in self.parameters(rows, memo, as_tuples=True):
                copy.write_row(values)
