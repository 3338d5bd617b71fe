"""Every request of a known tenant gets its ledger row, refused ones included (cost 0, status
``refused``, the refusal's code); a 401 names no tenant and leaves no row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from cloudlet.counters.memory import MemoryCounters
from cloudlet.counters.redis_backend import RedisCounters
from cloudlet.domain import GenerationRequest
from cloudlet.errors import (
    AuthenticationError,
    BudgetExceeded,
    CloudletError,
    ModelNotFound,
    ModelNotPermittedForKey,
    RateLimited,
    StorageUnavailable,
)
from cloudlet.gateway.accounting import Accounting, Prices
from cloudlet.pricing import Money
from tests.conftest import free_port
from tests.fakes import FakeChatEngine
from tests.unit.gateway.test_accounting import HI, World, _world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    made = await _world(tmp_path, FakeChatEngine("fake"), MemoryCounters())
    yield made
    await made.ledger.close()


async def refused(world: World, key: str | None, request: GenerationRequest) -> CloudletError:
    with pytest.raises(CloudletError) as caught:
        await world.pipeline.generate(key, request)
    return caught.value


async def test_refusals_of_a_known_key_are_rows_of_cost_zero(world: World) -> None:
    keys = world.ledger.keys
    scoped = await keys.create("scoped", models=["other"])
    slow = await keys.create("slow", rpm=1)
    poor = await keys.create("poor", budget=Money(Decimal("0.000001")))
    assert isinstance(await refused(world, scoped.key, HI), ModelNotPermittedForKey)
    unknown = GenerationRequest(model="nope", messages=HI.messages, max_tokens=8)
    assert isinstance(await refused(world, world.key, unknown), ModelNotFound)
    generation = await world.pipeline.generate(slow.key, HI)
    _ = [event async for event in generation.events]
    assert isinstance(await refused(world, slow.key, HI), RateLimited)
    assert isinstance(await refused(world, poor.key, HI), BudgetExceeded)
    assert isinstance(await refused(world, "sk-cl-unknown", HI), AuthenticationError)
    assert isinstance(await refused(world, None, HI), AuthenticationError)
    rows = {(r["team"], r["status"]): r for r in await world.rows()}
    assert set(rows) == {
        ("scoped", "refused"),
        ("research", "refused"),
        ("slow", "ok"),
        ("slow", "refused"),
        ("poor", "refused"),
    }  # the two 401s: no row
    assert rows["scoped", "refused"]["error"] == "model_not_permitted_for_key"
    assert rows["research", "refused"]["error"] == "model_not_found"
    assert rows["research", "refused"]["model"] == "nope"
    assert rows["slow", "refused"]["error"] == "rate_limit_exceeded"
    assert rows["poor", "refused"]["error"] == "budget_exceeded"
    for key in [("scoped", "refused"), ("slow", "refused"), ("poor", "refused")]:
        row = rows[key]
        assert (row["cost_nanos"], row["prompt_tokens"], row["completion_tokens"]) == (0, 0, 0)
        assert row["key_id"] is not None


async def test_counters_down_is_a_503_and_a_refused_row(world: World) -> None:
    down = RedisCounters.from_url(f"redis://127.0.0.1:{free_port()}/0")
    gateway = world.pipeline.gateway
    assert world.pipeline.accounting is not None
    world.pipeline.accounting = Accounting(down, world.ledger.writer, Prices([], gateway.stats))
    try:
        error = await refused(world, world.key, HI)
    finally:
        await down.close()
    assert isinstance(error, StorageUnavailable)
    assert error.status == 503 and error.retry_after is not None
    (row,) = await world.rows()
    assert (row["status"], row["error"], row["cost_nanos"]) == (
        "refused",
        "storage_unavailable",
        0,
    )
