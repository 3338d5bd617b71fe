from __future__ import annotations

import dataclasses
import random
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import String, func, select

from cloudlet.ledger.db import create_engine
from cloudlet.ledger.inserts import COLUMNS
from cloudlet.ledger.migrate import upgrade
from cloudlet.ledger.store import Ledger
from cloudlet.ledger.tables import usage
from cloudlet.ledger.writer import LedgerWriter
from cloudlet.pricing import Money
from tests.unit.ledger.rows import T0, row


async def _count(ledger: Ledger) -> int:
    async with ledger.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(usage))).scalar_one())


async def test_the_same_request_id_is_written_once(ledger: Ledger) -> None:
    first = row("req-1", cost="0.5")
    ledger.writer.record(first)
    ledger.writer.record(row("req-1", cost="9.9"))  # same batch
    await ledger.writer.flush()
    ledger.writer.record(row("req-1", cost="7.7"))  # a later batch: a retried write
    ledger.writer.record(row("req-2"))
    await ledger.writer.flush()
    assert await _count(ledger) == 2
    (group,) = await ledger.report(by="model")
    assert group.requests == 2
    assert group.cost.amount == Decimal("0.500001")


async def test_totals_equal_the_sum_of_rows_to_the_cent(ledger: Ledger) -> None:
    rng = random.Random(5)
    rows = [
        row(
            f"r{i}",
            cost=str(Decimal(rng.randrange(0, 10**9)).scaleb(-9)),
            team=rng.choice(["a", "b", "c"]),
            model=rng.choice(["smollm2", "mistral-small"]),
            prompt=rng.randrange(1, 4000),
            completion=rng.randrange(0, 2000),
        )
        for i in range(600)
    ]
    for r in rows:
        ledger.writer.record(r)
    await ledger.writer.flush()
    expected = sum((r.cost.amount for r in rows), Decimal(0))
    for by in ("team", "model", "target", "key"):
        groups = await ledger.report(by=by)
        total = sum((g.cost.amount for g in groups), Decimal(0))
        assert total == expected  # exact, so certainly to the cent
        assert total.quantize(Decimal("0.01")) == expected.quantize(Decimal("0.01"))
        assert sum(g.requests for g in groups) == 600
        assert sum(g.prompt_tokens for g in groups) == sum(r.prompt_tokens for r in rows)
    by_team = {g.group: g.cost.amount for g in await ledger.report(by="team")}
    for team, amount in by_team.items():
        assert amount == sum((r.cost.amount for r in rows if r.team == team), Decimal(0))


async def test_close_writes_what_is_pending(url: str) -> None:
    first = await Ledger.open(url)
    for i in range(25):
        first.writer.record(row(f"r{i}"))
    await first.close()
    with pytest.raises(RuntimeError):
        first.writer.record(row("late"))
    again = await Ledger.open(url)
    try:
        assert await _count(again) == 25
    finally:
        await again.close()


async def test_batches_are_split_at_batch_rows(ledger: Ledger) -> None:
    writer = LedgerWriter(ledger.engine, batch_rows=7, flush_ms=60_000)
    writer.start()
    for i in range(50):
        writer.record(row(f"b{i}"))
    await writer.flush()  # does not wait for the (long) interval
    assert writer.pending == 0
    await writer.close()
    assert await _count(ledger) == 50


async def test_rows_wait_in_memory_until_the_database_can_take_them(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'late.db'}")
    writer = LedgerWriter(engine, batch_rows=10, flush_ms=1)
    writer.start()
    try:
        for i in range(3):
            writer.record(row(f"w{i}"))
        # No tables yet: the writer's inserts fail and it retries; nothing is dropped.
        await upgrade(engine)
        await writer.flush()
        async with engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(usage))).scalar_one()
        assert count == 3
    finally:
        await writer.close()
        await engine.dispose()


async def test_flush_needs_a_started_writer(ledger: Ledger) -> None:
    with pytest.raises(RuntimeError):
        await LedgerWriter(ledger.engine).flush()


def test_a_row_needs_one_currency() -> None:
    bad = row("x")
    bad = dataclasses.replace(bad, cost=Money(Decimal(1), "EUR"))
    with pytest.raises(ValueError):
        bad.as_values()
    assert T0.tzinfo is not None


async def test_a_row_the_database_refuses_is_dropped_alone(ledger: Ledger) -> None:
    good = [row(f"g{i}") for i in range(4)]
    bad = dataclasses.replace(row("bad"), spilled="maybe")  # type: ignore[arg-type]
    for r in (*good[:2], bad, *good[2:]):
        ledger.writer.record(r)
    await ledger.writer.flush()
    assert await _count(ledger) == 4


async def test_out_of_range_numbers_and_long_names_are_clamped(ledger: Ledger) -> None:
    huge = dataclasses.replace(row("x" * 100, team="t" * 300), prompt_tokens=2**40, latency_ms=-5)
    ledger.writer.record(huge)
    ledger.writer.record(huge)  # the long request id maps to the same stored id
    await ledger.writer.flush()
    (group,) = await ledger.report(by="team")
    assert group.group == "t" * 128 and group.requests == 1
    assert group.prompt_tokens == 2**31 - 1


def test_the_row_tuple_covers_every_column_but_the_id() -> None:
    assert list(COLUMNS) == [c.name for c in usage.columns if c.name != "id"]
    assert set(row("r").as_values()) == set(COLUMNS)


async def test_rows_are_stored_as_sqlalchemys_own_insert_stores_them(ledger: Ledger) -> None:
    mine = dataclasses.replace(row("mine", team=None), spilled=True, ttft_ms=None)
    ledger.writer.record(mine)
    await ledger.writer.flush()
    theirs = dataclasses.replace(mine, request_id="theirs")
    async with ledger.engine.begin() as conn:
        await conn.execute(usage.insert(), [theirs.as_values()])
    columns = [usage.c[name] for name in COLUMNS if name != "request_id"]
    async with ledger.engine.connect() as conn:
        # Raw, as the database holds them (a string for SQLite's timestamps), not as read back.
        stored = (await conn.execute(select(*[c.cast(String) for c in columns]))).all()
    assert len(stored) == 2 and stored[0] == stored[1]


async def test_a_batch_larger_than_one_statement_is_written_whole(ledger: Ledger) -> None:
    # One batch, more rows than one SQLite statement may bind variables for.
    writer = LedgerWriter(ledger.engine, batch_rows=5000, flush_ms=60_000)
    writer.start()
    for i in range(4100):
        writer.record(row(f"big-{i}"))
    await writer.flush()
    await writer.close()
    assert await _count(ledger) == 4100
