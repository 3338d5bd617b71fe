"""Routes' cloud budgets in the real Redis: one budget for every gateway replica."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from cloudlet.config import ModelSpec, Spec
from cloudlet.config.remote import RouteSpec
from cloudlet.counters.factory import open_route_budgets
from cloudlet.counters.route_budgets import RedisRouteBudgets
from cloudlet.errors import BudgetExhausted
from cloudlet.gateway import Gateway
from cloudlet.gateway.pricing import worst_case
from tests.unit.counters.backends import REDIS, delete_prefix, new_prefix
from tests.unit.gateway.scripted import FakeClock, ScriptedEngine, ask, cloud, drain, local


@pytest.fixture
async def stores() -> AsyncIterator[tuple[RedisRouteBudgets, RedisRouteBudgets]]:
    """Two stores on two connections, as two gateway processes would have."""
    prefix = new_prefix()
    a = RedisRouteBudgets.from_url(REDIS, prefix=prefix)
    b = RedisRouteBudgets.from_url(REDIS, prefix=prefix)
    yield a, b
    await a.close()
    await b.close()
    await delete_prefix(prefix)


async def test_two_replicas_at_the_edge_never_overspend(
    stores: tuple[RedisRouteBudgets, RedisRouteBudgets],
) -> None:
    a, b = stores
    limit, cent = Decimal("0.37"), Decimal("0.01")
    held = await asyncio.gather(
        *(store.reserve("chat:2026-11-28", cent, limit) for store in (a, b) * 50)
    )
    assert sum(held) == 37
    assert await b.spent("chat:2026-11-28") == limit
    await a.settle("chat:2026-11-28", cent, Decimal("0.004"))  # cost less than reserved
    assert await b.spent("chat:2026-11-28") == Decimal("0.364")
    assert await b.reserve("chat:2026-11-28", Decimal("0.006"), limit)
    assert not await a.reserve("chat:2026-11-28", Decimal("0.000000001"), limit)
    assert await a.spent("chat:2026-11-29") == 0  # another period, another budget


def test_only_redis_counters_share_route_budgets() -> None:
    assert open_route_budgets("memory") is None
    store = open_route_budgets(REDIS)
    assert isinstance(store, RedisRouteBudgets)
    asyncio.run(store.close())


async def test_two_gateways_share_one_route_budget(
    stores: tuple[RedisRouteBudgets, RedisRouteBudgets],
) -> None:
    """Each gateway spends through the cloud; the other sees it and stops at the limit."""
    clock = FakeClock()
    price = cloud("cloud").price
    assert price is not None
    worst = worst_case(price, ask("chat"), 512).amount  # what one request reserves
    route = RouteSpec.model_validate(
        {
            "name": "chat",
            "targets": ["local", "cloud"],
            "policy": "fallback",
            "cloud_budget": {"per_day": str(worst), "currency": "USD", "when_spent": "reject"},
        }
    )
    models: list[ModelSpec] = [local("local"), cloud("cloud")]  # a cloud token costs $1
    spec = Spec(models=models, routes=[route])

    def gateway(store: RedisRouteBudgets) -> Gateway:
        down = ScriptedEngine("local")
        down.load_error = RuntimeError("no local capacity")
        engines = {"local": down, "cloud": ScriptedEngine("cloud", ["C"])}
        return Gateway(
            engines, spec, clock=clock, sleep=clock.sleep, rng=random.Random(1), budget_store=store
        )

    a, b = (gateway(store) for store in stores)
    await a.start()
    await b.start()
    try:
        # The budget is one request's worst case: the first fits, settles at its real $4, and
        # then no second request fits, on either gateway.
        first = await a.generate(ask("chat"))
        assert await drain(first.events) == "C"
        spent = await b.budget_spent("chat")
        assert spent is not None and spent.amount == Decimal(4)  # 3 prompt + 1 completion token
        assert await a.budget_spent("chat") == spent
        with pytest.raises(BudgetExhausted, match="cloud budget"):
            await b.generate(ask("chat"))
    finally:
        await a.close()
        await b.close()


async def test_a_period_redis_does_not_hold_is_seeded_once(
    stores: tuple[RedisRouteBudgets, RedisRouteBudgets],
) -> None:
    a, b = stores
    reads = 0

    async def seed() -> Decimal:
        nonlocal reads
        reads += 1
        return Decimal("0.30")  # what the ledger says this period spent

    limit = Decimal("0.50")
    assert not await a.reserve("chat:2026-12-06", Decimal("0.21"), limit, seed)
    assert await b.reserve("chat:2026-12-06", Decimal("0.20"), limit, seed)
    assert reads == 1  # the period exists in Redis now: nobody reads the ledger again
    await a.settle("chat:2026-12-06", Decimal("0.20"), Decimal("0.10"))
    assert await b.spent("chat:2026-12-06") == Decimal("0.40")
    # a settle for a period Redis lost does not invent one: the next reserve re-seeds it
    await a.settle("chat:2026-12-07", Decimal("0.20"), Decimal("0.10"))
    assert await a.reserve("chat:2026-12-07", Decimal("0.20"), limit, seed)
    assert reads == 2 and await a.spent("chat:2026-12-07") == Decimal("0.50")


async def test_a_settle_retried_after_a_lost_reply_counts_once(
    stores: tuple[RedisRouteBudgets, RedisRouteBudgets],
) -> None:
    a, _ = stores
    limit = Decimal("1")
    assert await a.reserve("chat:2026-12-06", Decimal("0.50"), limit)
    for _ in range(2):  # the first reply was lost: the caller settles again
        await a.settle("chat:2026-12-06", Decimal("0.50"), Decimal("0.10"), "req-1")
    assert await a.spent("chat:2026-12-06") == Decimal("0.10")  # not -0.30 held, 0.20 spent
