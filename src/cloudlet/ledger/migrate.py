"""Bring the ledger's schema to the newest revision, at start-up, from code.

Every process that opens the ledger (each gateway replica, ``cloudlet keys``, ``cloudlet
usage``) calls :func:`upgrade`; the first one migrates and the others find nothing to do. To
keep concurrent starters from racing, the migration runs in one transaction that first takes
a lock: ``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` (the write lock) on
SQLite. Both databases have transactional DDL here, so a failed migration leaves nothing
half-done.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from cloudlet.ledger.db import IMMEDIATE

#: An arbitrary constant that names the ledger's migration lock among advisory locks.
_PG_LOCK = 0x636C6F75646C6574  # "cloudlet"
SCRIPT_LOCATION = "cloudlet.ledger:migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's settings, without an ini file."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, *, schema: str | None = None) -> None:
    """Migrate to ``head``. ``schema``: a PostgreSQL schema to create first (see db.py)."""
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = await conn.execution_options(**{IMMEDIATE: True})
        async with conn.begin():
            if engine.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
                if schema is not None:
                    # schema is checked against [a-z_][a-z0-9_]* when the URL is parsed.
                    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await conn.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (``None`` before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    def _read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_read)
