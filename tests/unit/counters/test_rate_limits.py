from __future__ import annotations

from decimal import Decimal

import pytest

from cloudlet.counters import Counters, FakeClock, Limits
from cloudlet.errors import BudgetExceeded, RateLimited
from cloudlet.pricing import Money

FREE = Money.zero("USD")


async def test_requests_per_minute_refill_continuously(
    counters: Counters, clock: FakeClock
) -> None:
    limits = Limits(rpm=3)
    for _ in range(3):
        await counters.reserve("k", limits, tokens=0, cost=FREE)
    with pytest.raises(RateLimited) as info:
        await counters.reserve("k", limits, tokens=0, cost=FREE)
    error = info.value
    assert (error.status, error.code, error.limit, error.retry_after) == (
        429,
        "rate_limit_exceeded",
        "rpm",
        20,
    )
    assert "RPM" in error.message and "limit 3" in error.message
    clock.advance(19.5)
    with pytest.raises(RateLimited):
        await counters.reserve("k", limits, tokens=0, cost=FREE)
    clock.advance(0.5)
    await counters.reserve("k", limits, tokens=0, cost=FREE)
    with pytest.raises(RateLimited):
        await counters.reserve("k", limits, tokens=0, cost=FREE)


async def test_tokens_per_minute_are_reserved_then_refunded(
    counters: Counters, clock: FakeClock
) -> None:
    limits = Limits(tpm=1000)
    first = await counters.reserve("k", limits, tokens=600, cost=FREE)
    with pytest.raises(RateLimited) as info:
        await counters.reserve("k", limits, tokens=500, cost=FREE)
    assert info.value.limit == "tpm" and info.value.retry_after == 6
    await counters.settle(first, tokens=100, cost=FREE)  # used 100 of the 600 reserved
    await counters.reserve("k", limits, tokens=500, cost=FREE)
    with pytest.raises(RateLimited):
        await counters.reserve("k", limits, tokens=500, cost=FREE)
    clock.advance(60)
    await counters.reserve("k", limits, tokens=1000, cost=FREE)


async def test_a_request_larger_than_the_limit_is_told_so(counters: Counters) -> None:
    with pytest.raises(RateLimited) as info:
        await counters.reserve("k", Limits(tpm=100), tokens=101, cost=FREE)
    assert "Request too large" in info.value.message and info.value.retry_after == 60


async def test_keys_are_limited_independently(counters: Counters) -> None:
    limits = Limits(rpm=1)
    await counters.reserve("a", limits, tokens=0, cost=FREE)
    await counters.reserve("b", limits, tokens=0, cost=FREE)
    with pytest.raises(RateLimited):
        await counters.reserve("a", limits, tokens=0, cost=FREE)


async def test_a_refusal_takes_nothing(counters: Counters) -> None:
    limits = Limits(rpm=2, tpm=100, budget=Money(Decimal("0.10")))
    with pytest.raises(BudgetExceeded):
        await counters.reserve("k", limits, tokens=10, cost=Money(Decimal("0.11")))
    with pytest.raises(RateLimited):
        await counters.reserve("k", limits, tokens=200, cost=FREE)
    for _ in range(2):  # neither refusal used up a request or tokens
        await counters.reserve("k", limits, tokens=50, cost=Money(Decimal("0.05")))


async def test_the_longest_wait_is_reported(counters: Counters) -> None:
    limits = Limits(rpm=1, budget=Money(Decimal("0.10")), period="day")
    reservation = await counters.reserve("k", limits, tokens=0, cost=Money(Decimal("0.10")))
    await counters.settle(reservation, tokens=0, cost=Money(Decimal("0.10")))
    with pytest.raises(BudgetExceeded) as info:  # rpm would say 60 s; the budget says noon→midnight
        await counters.reserve("k", limits, tokens=0, cost=Money(Decimal("0.01")))
    assert info.value.retry_after == 12 * 3600


async def test_unlimited_keys_pass(counters: Counters) -> None:
    for _ in range(50):
        reservation = await counters.reserve("k", Limits(), tokens=10**6, cost=FREE)
        await counters.settle(reservation, tokens=10, cost=FREE)
