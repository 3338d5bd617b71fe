import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import pytest

from cloudlet.config.remote import CloudBudgetSpec
from cloudlet.gateway.budget import CloudBudget, Hold, InMemoryBudgetStore, hold
from cloudlet.gateway.pricing import Money
from tests.unit.gateway.scripted import FakeClock

USD = "USD"


def budget(clock: FakeClock, **spec: object) -> CloudBudget:
    return CloudBudget(
        "chat",
        CloudBudgetSpec.model_validate({"currency": USD, **spec}),
        InMemoryBudgetStore(),
        clock,
    )


def usd(amount: str) -> Money:
    return Money(Decimal(amount), USD)


async def test_reservations_never_exceed_the_limit_and_settle_to_real_cost() -> None:
    b = budget(FakeClock(), per_day="1.00")
    first = await b.reserve(usd("0.60"))
    assert first is not None
    assert await b.reserve(usd("0.50")) is None  # 0.60 held + 0.50 > 1.00
    await b.settle(first, usd("0.20"))
    await b.settle(first, usd("0.20"))  # exactly once
    assert await b.spent() == usd("0.20")
    second = await b.reserve(usd("0.80"))
    assert second is not None
    assert await b.spent() == usd("1.00")


async def test_concurrent_reservations_at_the_edge_do_not_overspend() -> None:
    b = budget(FakeClock(), per_day="1.00")
    results = await asyncio.gather(*(b.reserve(usd("0.30")) for _ in range(10)))
    assert sum(r is not None for r in results) == 3
    assert await b.spent() == usd("0.90")


async def test_a_new_day_starts_a_new_budget() -> None:
    clock = FakeClock()  # midnight UTC
    b = budget(clock, per_day="1.00")
    r = await b.reserve(usd("1.00"))
    assert r is not None
    await b.settle(r, usd("1.00"))
    clock.now += 3600
    assert await b.reserve(usd("0.01")) is None
    assert b.retry_after() == 23 * 3600 + 1
    clock.now += 23 * 3600
    assert await b.reserve(usd("0.01")) is not None


async def test_a_monthly_budget_resets_on_the_first() -> None:
    clock = FakeClock()  # 2026-01-01
    b = budget(clock, per_month="5")
    assert b.key() == "chat:2026-01"
    clock.now += 31 * 86400 - 10
    assert b.key() == "chat:2026-01" and b.retry_after() == 11
    clock.now += 10
    assert b.key() == "chat:2026-02"


async def test_the_exhausted_error_is_a_429_that_says_so() -> None:
    clock = FakeClock()
    b = budget(clock, per_day="20", when_spent="reject")
    exc = b.exhausted(local_wait_s=4.2)
    assert (exc.status, exc.code, exc.retry_after) == (429, "cloud_budget_exhausted", 5)
    assert "cloud budget" in exc.message and "20 USD per day" in exc.message
    assert b.exhausted().retry_after == 86401


async def test_money_in_another_currency_is_refused() -> None:
    b = budget(FakeClock(), per_day="1")
    with pytest.raises(ValueError, match="EUR"):
        await b.reserve(Money(Decimal("0.1"), "EUR"))


def test_one_period_exactly() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        CloudBudgetSpec.model_validate({"currency": USD})
    with pytest.raises(ValueError, match="exactly one"):
        CloudBudgetSpec.model_validate({"currency": USD, "per_day": 1, "per_month": 2})


async def test_a_new_period_starts_from_what_the_ledger_says_it_spent() -> None:
    clock = FakeClock()
    b = budget(clock, per_day="1.00")
    b.targets = ("cloud",)
    reads: list[tuple[tuple[str, ...], str, str]] = []

    async def seed(
        targets: Sequence[str], since: datetime, currency: str, others: Sequence[str]
    ) -> Decimal:
        reads.append((tuple(targets), since.isoformat(), currency))
        return Decimal("0.70")  # spent before a restart

    b.seed = seed
    assert await b.reserve(usd("0.40")) is None  # 0.70 + 0.40 > 1.00
    assert await b.reserve(usd("0.30")) is not None
    assert len(reads) == 1 and reads[0][0] == ("cloud",) and reads[0][2] == USD
    assert reads[0][1].endswith("00:00:00+00:00")  # from the start of the UTC day
    assert await b.spent() == usd("1.00")


async def test_a_hold_takes_every_covering_budget_or_none() -> None:
    clock = FakeClock()
    roomy, tight = budget(clock, per_day="10"), budget(clock, per_day="1")
    taken = await hold([roomy, tight], usd("0.80"))
    assert isinstance(taken, Hold)
    refused = await hold([roomy, tight], usd("0.80"))
    assert refused is tight  # 0.80 + 0.80 > 1
    assert await roomy.spent() == usd("0.80")  # the refused hold gave its part back
    await taken.settle(usd("0.50"))
    assert (await roomy.spent(), await tight.spent()) == (usd("0.50"), usd("0.50"))
