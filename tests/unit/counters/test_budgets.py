from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cloudlet.counters import Counters, FakeClock, Limits, period_window
from cloudlet.errors import BudgetExceeded
from cloudlet.pricing import Money, Price
from tests.unit.counters.backends import open_backend


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


async def test_reservations_fill_the_budget_and_settling_spends_it(counters: Counters) -> None:
    limits = Limits(budget=usd("1.00"), period="day")
    held = [await counters.reserve("k", limits, tokens=0, cost=usd("0.25")) for _ in range(4)]
    with pytest.raises(BudgetExceeded) as info:
        await counters.reserve("k", limits, tokens=0, cost=usd("0.01"))
    assert info.value.retry_after == 1  # only requests in flight stand in the way
    assert info.value.code == "budget_exceeded" and info.value.status == 429
    for reservation in held:
        await counters.settle(reservation, tokens=0, cost=usd("0.25"))
    with pytest.raises(BudgetExceeded) as info:
        await counters.reserve("k", limits, tokens=0, cost=usd("0.01"))
    assert info.value.retry_after == 12 * 3600  # spent: wait for the next UTC day
    assert "daily budget of 1 USD is spent" in info.value.message


async def test_settling_below_the_reservation_frees_the_rest(counters: Counters) -> None:
    limits = Limits(budget=usd("1.00"))
    reservation = await counters.reserve("k", limits, tokens=0, cost=usd("0.60"))
    await counters.settle(reservation, tokens=0, cost=usd("0.10"))
    await counters.reserve("k", limits, tokens=0, cost=usd("0.90"))
    state = await counters.budget_state("k", limits)
    assert state is not None
    assert (state.spent, state.held, state.limit) == (usd("0.10"), usd("0.90"), usd("1.00"))
    assert state.resets_at == datetime(2025, 7, 1, tzinfo=UTC)
    assert await counters.budget_state("k", Limits()) is None


async def test_a_new_period_starts_afresh(counters: Counters, clock: FakeClock) -> None:
    daily = Limits(budget=usd("1.00"), period="day")
    monthly = Limits(budget=usd("1.00"), period="month")
    for key, limits in (("d", daily), ("m", monthly)):
        r = await counters.reserve(key, limits, tokens=0, cost=usd("1.00"))
        await counters.settle(r, tokens=0, cost=usd("1.00"))
    clock.advance(12 * 3600)  # midnight: a new day, the same month
    await counters.reserve("d", daily, tokens=0, cost=usd("1.00"))
    with pytest.raises(BudgetExceeded) as info:
        await counters.reserve("m", monthly, tokens=0, cost=usd("0.01"))
    assert info.value.retry_after == 15 * 86400  # 16 June 00:00 → 1 July 00:00
    clock.set(datetime(2025, 7, 1, tzinfo=UTC).timestamp())
    await counters.reserve("m", monthly, tokens=0, cost=usd("1.00"))


async def test_spending_so_far_is_read_from_the_ledger_once_per_period(
    backend: str, clock: FakeClock
) -> None:
    calls: list[tuple[str, datetime, str]] = []

    async def seed(key_id: str, since: datetime, currency: str) -> Decimal:
        calls.append((key_id, since, currency))
        return Decimal("0.70")

    limits = Limits(budget=usd("1.00"), period="day")
    async with open_backend(backend, clock, seed=seed) as counters:
        with pytest.raises(BudgetExceeded):
            await counters.reserve("k", limits, tokens=0, cost=usd("0.40"))
        await counters.reserve("k", limits, tokens=0, cost=usd("0.30"))
        assert calls == [("k", datetime(2025, 6, 15, tzinfo=UTC), "USD")]
        clock.advance(12 * 3600)
        await counters.reserve("k", limits, tokens=0, cost=usd("0.30"))
        assert len(calls) == 2 and calls[1][1] == datetime(2025, 6, 16, tzinfo=UTC)


async def test_costs_in_another_currency_are_a_programming_error(counters: Counters) -> None:
    with pytest.raises(ValueError, match="EUR"):
        await counters.reserve(
            "k", Limits(budget=usd("1")), tokens=0, cost=Money(Decimal("0.1"), "EUR")
        )


async def test_a_burst_at_the_budget_edge_overspends_at_most_one_reservation(
    counters: Counters,
) -> None:
    """100 concurrent requests against a budget with room for ~33 worst cases."""
    limit = usd("1.00")
    limits = Limits(budget=limit, period="day")
    price = Price(Decimal("2000"), Decimal("6000"), "USD")  # per million tokens
    worst = price.worst_case(3, 4)  # 0.03 per request at most
    rng = random.Random(7)

    async def request() -> Money | None:
        try:
            reservation = await counters.reserve("k", limits, tokens=7, cost=worst)
        except BudgetExceeded:
            return None
        await asyncio.sleep(0)  # the "engine call": let the others interleave
        real = price.cost(3, rng.randrange(0, 5))
        await counters.settle(reservation, tokens=7, cost=real)
        return real

    results = await asyncio.gather(*(request() for _ in range(100)))
    spent = sum((r for r in results if r is not None), Money.zero("USD"))
    assert spent.amount <= limit.amount + worst.amount  # the bound…
    assert spent.amount <= limit.amount  # …and in fact none, as costs stay within reservations
    admitted = sum(r is not None for r in results)
    assert 33 <= admitted < 100
    state = await counters.budget_state("k", limits)
    assert state is not None and state.held == Money.zero() and state.spent == spent


def test_periods_follow_the_utc_calendar() -> None:
    december = datetime(2025, 12, 31, 23, 59, tzinfo=UTC).timestamp()
    assert period_window("month", december)[0] == "2025-12"
    assert period_window("month", december)[2] == datetime(2026, 1, 1, tzinfo=UTC)
    assert period_window("day", december)[1:] == (
        datetime(2025, 12, 31, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
