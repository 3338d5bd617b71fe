from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from cloudlet.ledger.migrate import alembic_config, current_revision, upgrade
from cloudlet.ledger.store import Ledger
from cloudlet.ledger.tables import metadata


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_build_exactly_the_tables_the_code_uses(ledger: Ledger) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert await current_revision(ledger.engine) == head
    async with ledger.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_upgrading_again_is_a_no_op(ledger: Ledger) -> None:
    await upgrade(ledger.engine)
    await upgrade(ledger.engine)
    assert await current_revision(ledger.engine) is not None


async def test_concurrent_openers_migrate_once(url: str) -> None:
    """Replicas starting together: one migrates, the others wait for its lock and find
    nothing to do (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL)."""
    opened = await asyncio.gather(*(Ledger.open(url, start_writer=False) for _ in range(3)))
    try:
        revisions = {await current_revision(ledger.engine) for ledger in opened}
        assert len(revisions) == 1 and None not in revisions
    finally:
        for ledger in opened:
            await ledger.close()
