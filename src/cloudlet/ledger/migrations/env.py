"""Alembic's environment for the ledger.

Normally run by :func:`cloudlet.ledger.migrate.upgrade`, which hands over an open connection
(inside a transaction, with the migration lock held) in ``config.attributes["connection"]``.
Also works from the ``alembic`` command line with ``-x url=...`` or ``sqlalchemy.url``, and in
offline mode (``--sql``) to print the DDL for a DBA.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from cloudlet.ledger.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    return url or context.config.get_main_option("sqlalchemy.url") or ""


async def _run_with_own_engine(url: str) -> None:
    from cloudlet.ledger.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def main() -> None:
    if context.is_offline_mode():
        context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_with_own_engine(_url()))


main()
