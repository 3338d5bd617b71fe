"""Redis down or hanging: every call ends within a bounded wait as StorageUnavailable (a 503
with Retry-After for the client), never a raw client error; /ready's probe says so."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from cloudlet.counters import Limits
from cloudlet.counters.redis_backend import RedisCounters
from cloudlet.counters.route_budgets import RedisRouteBudgets
from cloudlet.errors import StorageUnavailable
from cloudlet.pricing import Money
from tests.conftest import free_port
from tests.unit.counters.backends import REDIS, delete_prefix, new_prefix

LIMITS = Limits(rpm=10, tpm=1000, budget=Money(Decimal("1"), "USD"))


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A socket that accepts connections and never answers (a hung Redis)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    for writer in held:
        writer.close()
    await server.wait_closed()


@pytest.mark.parametrize("where", ["closed port", "silent socket"])
async def test_counters_outage_is_storage_unavailable(
    where: str, silent_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port() if where == "closed port" else silent_port
    counters = RedisCounters.from_url(f"redis://:hunter2-secret@127.0.0.1:{port}/0")
    try:
        with caplog.at_level(logging.INFO):
            with pytest.raises(StorageUnavailable) as refused:
                await counters.reserve("key_a", LIMITS, tokens=10, cost=Money.zero("USD"))
            assert refused.value.status == 503
            assert refused.value.retry_after is not None and refused.value.retry_after >= 1
            with pytest.raises(StorageUnavailable):
                await counters.budget_state("key_a", LIMITS)
            assert not await counters.ready()
        assert "hunter2-secret" not in caplog.text
        assert "unreachable" in caplog.text
    finally:
        await counters.close()


async def test_route_budgets_outage_is_storage_unavailable() -> None:
    budgets = RedisRouteBudgets.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(StorageUnavailable):
            await budgets.reserve("chat:2025-06-15", Decimal("0.01"), Decimal("1"))
        with pytest.raises(StorageUnavailable):
            await budgets.settle("chat:2025-06-15", Decimal("0.01"), Decimal("0"))
        assert not await budgets.ready()
    finally:
        await budgets.close()


async def test_ready_when_redis_answers_and_a_settle_retried_counts_once() -> None:
    prefix = new_prefix()
    counters = RedisCounters.from_url(REDIS, prefix=prefix)
    try:
        assert await counters.ready()
        cost = Money(Decimal("0.25"), "USD")
        held = await counters.reserve("key_b", LIMITS, tokens=10, cost=cost)
        await counters.settle(held, tokens=10, cost=cost)
        await counters.settle(held, tokens=10, cost=cost)  # a retry whose first reply was lost
        state = await counters.budget_state("key_b", LIMITS)
        assert state is not None
        assert (state.spent.amount, state.held.amount) == (Decimal("0.25"), Decimal(0))
    finally:
        await counters.close()
        await delete_prefix(prefix)
