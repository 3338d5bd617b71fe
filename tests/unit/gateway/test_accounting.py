"""The pipeline's accounting without HTTP: one ledger row per request however it ends, the
budget settled to the nanos, prices read once per TTL, request ids in time order."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from cloudlet.config import Spec
from cloudlet.counters.base import BudgetState, Limits, Reservation
from cloudlet.counters.memory import MemoryCounters
from cloudlet.domain import ChatMessage, EngineStats, GenerationRequest, TextDelta
from cloudlet.domain.tokens import prompt_token_bound
from cloudlet.errors import EngineUnavailable
from cloudlet.gateway import Gateway
from cloudlet.gateway.accounting import Accounting
from cloudlet.gateway.catalog import Catalog
from cloudlet.gateway.life import new_request_id
from cloudlet.gateway.pipeline import Pipeline
from cloudlet.gateway.prices import STATS_TTL_S, Prices
from cloudlet.gateway.tenancy import Tenancy
from cloudlet.ledger.store import Ledger
from cloudlet.ledger.tables import usage
from cloudlet.pricing import Money, Price
from tests.fakes import FakeChatEngine

SPEC = """
models:
  - name: fake
    engine: openai
    url: http://127.0.0.1:9/v1
    price: {input_per_mtok: 1000, output_per_mtok: 2000}
"""
HI = GenerationRequest(
    model="fake", messages=(ChatMessage(role="user", content="Say hi"),), max_tokens=8
)


class SlowSettle(MemoryCounters):
    """Counters whose settle waits (as Redis does), so that a test can cancel it midway."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def settle(self, reservation: Reservation, *, tokens: int, cost: Money) -> None:
        self.waiting.set()
        await asyncio.shield(self._settle_later(reservation, tokens, cost))

    async def _settle_later(self, reservation: Reservation, tokens: int, cost: Money) -> None:
        await self.release.wait()
        await super().settle(reservation, tokens=tokens, cost=cost)


@dataclass
class World:
    pipeline: Pipeline
    ledger: Ledger
    counters: MemoryCounters
    engine: FakeChatEngine
    key: str
    key_id: str
    limits: Limits

    async def rows(self) -> list[dict[str, object]]:
        await self.ledger.writer.flush()
        async with self.ledger.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(select(usage))).mappings().all()]

    async def budget(self) -> BudgetState:
        state = await self.counters.budget_state(self.key_id, self.limits)
        assert state is not None
        return state


async def _world(tmp_path: Path, engine: FakeChatEngine, counters: MemoryCounters) -> World:
    spec = Spec.model_validate(yaml.safe_load(SPEC))
    gateway = Gateway({"fake": engine}, spec)
    await gateway.start()
    ledger = await Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    created = await ledger.keys.create("research", budget=Money(Decimal(1)), rpm=1000)
    pipeline = Pipeline(
        gateway,
        Catalog.from_spec(spec),
        Tenancy(ledger.keys, loopback=True),
        Accounting(counters, ledger.writer, Prices(spec.models, gateway.stats)),
    )
    return World(
        pipeline,
        ledger,
        counters,
        engine,
        created.key,
        created.record.id,
        created.record.limits,
    )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    made = await _world(tmp_path, FakeChatEngine("fake"), MemoryCounters())
    yield made
    await made.ledger.close()


async def test_a_finished_request_is_one_row_and_settles_its_budget(world: World) -> None:
    generation = await world.pipeline.generate(world.key, HI)
    events = [event async for event in generation.events]
    assert sum(isinstance(e, TextDelta) for e in events) == 3
    (row,) = await world.rows()
    assert row["status"] == "ok" and row["key_id"] == world.key_id
    assert (row["prompt_tokens"], row["completion_tokens"]) == (2, 3)
    # 2 prompt tokens at 1000/M and 3 completion tokens at 2000/M
    assert row["cost_nanos"] == 8_000_000 == row["cloud_equivalent_nanos"]
    assert str(row["request_id"]).startswith("req-")
    state = await world.budget()
    assert state.held == Money.zero() and state.spent == Money(Decimal("0.008"))


async def test_n_choices_reserve_and_charge_every_choice(world: World) -> None:
    request = dataclasses.replace(HI, n=3)
    price = Price(Decimal(1000), Decimal(2000))
    generation = await world.pipeline.generate(world.key, request)
    # Held while it runs: the prompt's bound once, and max_tokens for each of the 3 choices.
    held = (await world.budget()).held
    assert held == price.worst_case(prompt_token_bound(request), 3 * 8)
    assert held.amount > price.worst_case(prompt_token_bound(request), 8).amount
    events = [event async for event in generation.events]
    assert sorted({e.choice for e in events if isinstance(e, TextDelta)}) == [0, 1, 2]
    (row,) = await world.rows()
    assert (row["prompt_tokens"], row["completion_tokens"]) == (2, 9)  # the prompt once
    charged = price.cost(2, 9)
    assert row["cost_nanos"] == charged.nanos
    assert charged.amount <= held.amount  # never more than was held
    state = await world.budget()
    assert state.held == Money.zero() and state.spent == charged


async def test_a_stream_the_client_leaves_is_one_cancelled_row(world: World) -> None:
    generation = await world.pipeline.generate(world.key, HI)
    await generation.events.__anext__()
    await generation.events.aclose()
    await generation.events.aclose()  # twice: still one row
    (row,) = await world.rows()
    assert row["status"] == "cancelled"
    state = await world.budget()
    assert state.held == Money.zero() and state.spent.nanos == row["cost_nanos"]


async def test_a_request_that_fails_before_streaming_is_one_error_row(tmp_path: Path) -> None:
    failing = FakeChatEngine("fake", fail_before=EngineUnavailable("down"))
    world = await _world(tmp_path, failing, MemoryCounters())
    try:
        with pytest.raises(EngineUnavailable):
            await world.pipeline.generate(world.key, HI)
        (row,) = await world.rows()
        assert row["status"] == "error" and row["target"] is None and row["cost_nanos"] == 0
        assert (await world.budget()).held == Money.zero()
    finally:
        await world.ledger.close()


async def test_a_cancellation_during_the_settle_loses_neither_row_nor_budget(
    tmp_path: Path,
) -> None:
    counters = SlowSettle()
    world = await _world(tmp_path, FakeChatEngine("fake"), counters)
    try:

        async def client() -> None:
            generation = await world.pipeline.generate(world.key, HI)
            async for _ in generation.events:
                pass

        task = asyncio.ensure_future(client())
        await counters.waiting.wait()  # the stream ended; its settle waits on the counters
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        counters.release.set()
        (row,) = await world.rows()
        assert row["status"] == "ok"
        await asyncio.sleep(0)  # the shielded settle finishes on its own
        state = await world.budget()
        assert state.held == Money.zero() and state.spent.nanos == row["cost_nanos"]
    finally:
        await world.ledger.close()


def test_local_prices_read_the_engines_rates_once_per_ttl() -> None:
    spec = Spec.model_validate(
        yaml.safe_load("models:\n  - name: local\n    engine: openai\n    url: http://h/v1\n")
    )
    now = [0.0]
    rate = [100.0]
    reads = []

    def stats() -> Mapping[str, EngineStats]:
        reads.append(now[0])
        return {"local": EngineStats(tokens_per_second=rate[0])}

    prices = Prices(spec.models, stats, clock=lambda: now[0])
    first, _ = prices.of("local")
    rate[0] = 200.0
    assert prices.of_targets(["local", "unknown"])["local"][0] == first  # within the TTL
    assert prices.of("unknown")[0].cost(10**6, 10**6) == Money.zero()
    now[0] += STATS_TTL_S
    second, _ = prices.of("local")
    assert second.output_per_mtok < first.output_per_mtok  # twice the decode rate: cheaper
    assert reads == [0.0, STATS_TTL_S]


def test_request_ids_are_unique_and_in_time_order() -> None:
    first = [new_request_id() for _ in range(1000)]
    time.sleep(0.002)
    later = new_request_id()
    assert len(set(first)) == 1000
    assert all(len(i) == 36 and i.startswith("req-") for i in first)
    assert max(first) < later
