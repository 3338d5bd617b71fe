"""Real databases for ledger tests: a fresh SQLite file, or a fresh PostgreSQL schema.

Each test gets its own schema (``t_<random>``) in the shared ``test`` database, dropped
afterwards, so parallel runs and other users of the database never collide.
Override the server with CLOUDLET_TEST_POSTGRES (default postgresql://root@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text

from cloudlet.ledger.db import create_engine, schema_of

POSTGRES = os.environ.get("CLOUDLET_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


def new_ledger_url(backend: str, tmp: Path) -> str:
    """A URL for an empty ledger: a file in ``tmp``, or a new PostgreSQL schema."""
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'ledger.db'}"
    return f"{POSTGRES}?schema=t_{secrets.token_hex(6)}"


async def drop_ledger(url: str) -> None:
    """Drop the PostgreSQL schema ``url`` names (SQLite files go with ``tmp``)."""
    schema = schema_of(url)
    if schema is None:
        return
    engine = create_engine(POSTGRES)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


@asynccontextmanager
async def ledger_url(backend: str, tmp: Path) -> AsyncIterator[str]:
    """A URL for an empty ledger, dropped on exit. Enter and exit in one event loop; a sync
    test uses :func:`new_ledger_url` and :func:`drop_ledger` instead."""
    url = new_ledger_url(backend, tmp)
    try:
        yield url
    finally:
        await drop_ledger(url)
