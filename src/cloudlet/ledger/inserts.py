"""How a batch of usage rows reaches the database: one multi-row statement on SQLite,
SQLAlchemy's ``executemany`` on PostgreSQL; ``ON CONFLICT (request_id) DO NOTHING`` on both.

Rows arrive as tuples in :data:`COLUMNS` order (:meth:`~cloudlet.ledger.writer.UsageRow.values`).

On SQLite the driver runs every statement in its own thread, and ``executemany`` steps the
statement once per row through it (each step handing the GIL between that thread and the
event loop that serves requests). One ``INSERT ... VALUES (...), (...)`` per chunk of rows
makes that one step per batch and skips SQLAlchemy's per-row parameter handling; the values
go through the same bind processors as SQLAlchemy's own insert (datetimes, booleans), so the
stored rows are the same. asyncpg runs in the event loop and pipelines ``executemany`` itself.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudlet.ledger.tables import usage

#: The usage table's columns (all but the surrogate ``id``), in table order: the order rows
#: carry them (see :meth:`cloudlet.ledger.writer.UsageRow.values`).
COLUMNS = tuple(column.name for column in usage.columns if column.name != "id")

Row = tuple[Any, ...]


class UsageInsert:
    """Inserts batches of rows for one database (``dialect``)."""

    def __init__(self, dialect: Dialect) -> None:
        if dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported ledger database: {dialect.name}")
        self._sqlite = dialect.name == "sqlite"
        self._statement = postgresql.insert(usage).on_conflict_do_nothing(
            index_elements=["request_id"]
        )
        columns = [usage.c[name] for name in COLUMNS]
        self._processors = [
            (i, processor)
            for i, column in enumerate(columns)
            if (processor := column.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        ]
        quote = dialect.identifier_preparer
        table = quote.format_table(usage)
        names = ", ".join(quote.format_column(c) for c in columns)
        # Only our own table's quoted names go into the text; every value is a bound "?".
        self._head = f"INSERT INTO {table} ({names}) VALUES "  # noqa: S608
        self._one = "(" + ", ".join("?" * len(COLUMNS)) + ")"
        # SQLite binds at most 32766 variables per statement (999 before 3.32).
        most = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
        self._chunk = most // len(COLUMNS)

    async def __call__(self, conn: AsyncConnection, rows: list[Row]) -> None:
        if not self._sqlite:
            params = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
            await conn.execute(self._statement, params)
            return
        for start in range(0, len(rows), self._chunk):
            chunk = rows[start : start + self._chunk]
            values = ", ".join([self._one] * len(chunk))
            sql = f"{self._head}{values} ON CONFLICT (request_id) DO NOTHING"
            await conn.exec_driver_sql(sql, self._params(chunk))

    def _params(self, rows: list[Row]) -> tuple[Any, ...]:
        params: list[Any] = []
        for row in rows:
            values = list(row)
            for i, processor in self._processors:
                values[i] = processor(values[i])
            params += values
        return tuple(params)
