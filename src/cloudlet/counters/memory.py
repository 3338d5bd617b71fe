"""Counters in this process's memory: the default, for one gateway replica.

Atomic without locks: :meth:`MemoryCounters.reserve` checks and takes every limit with no
``await`` in between, and the event loop runs one coroutine at a time. The only ``await``
(reading the budget's seed from the ledger) comes before the check, and its result is applied
only if no other request seeded the same period meanwhile.

State lives in the instance (an app's lifespan owns it); a restart empties the buckets (a
key may burst once more) and re-reads what each budget already spent from the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from cloudlet.counters.base import (
    BudgetSeed,
    BudgetState,
    Limits,
    Reservation,
    budget_nanos,
    budget_refusal,
    period_window,
    rate_refusal,
    refill,
    wait_for,
    worst,
)
from cloudlet.counters.clock import Clock, SystemClock
from cloudlet.errors import CloudletError
from cloudlet.pricing import Money, to_nanos


@dataclass(slots=True)
class _Budget:
    period: str
    spent: int
    held: int


class MemoryCounters:
    def __init__(self, *, clock: Clock | None = None, seed: BudgetSeed | None = None) -> None:
        self._clock = clock or SystemClock()
        self._seed = seed
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._budgets: dict[str, _Budget] = {}

    async def reserve(
        self, key_id: str, limits: Limits, *, tokens: int, cost: Money
    ) -> Reservation:
        now = self._clock.now()
        budget: _Budget | None = None
        if limits.budget is not None:
            budget = await self._budget(key_id, limits, now)
        # From here to the end: no await, so check-and-take is atomic.
        refusals: list[tuple[float, CloudletError]] = []
        rpm = tpm = None  # the buckets' new states, if taken
        if limits.rpm is not None:
            rpm = self._take(key_id, "rpm", limits, limits.rpm, 1, tokens, now, refusals)
        if limits.tpm is not None:
            tpm = self._take(key_id, "tpm", limits, limits.tpm, tokens, tokens, now, refusals)
        nanos = 0
        period: str | None = None
        if budget is not None:
            limit_nanos, nanos = budget_nanos(limits, cost)
            period = budget.period
            if budget.spent + budget.held + nanos > limit_nanos:
                reset_in = (period_window(limits.period, now)[2].timestamp()) - now
                fits = budget.spent + nanos <= limit_nanos
                wait = 1.0 if fits else reset_in
                refusals.append(
                    (wait, budget_refusal(limits, fits_when_settled=fits, reset_in_s=reset_in))
                )
        refused = worst(refusals)
        if refused is not None:
            raise refused
        if rpm is not None:
            self._buckets[(key_id, "rpm")] = rpm
        if tpm is not None:
            self._buckets[(key_id, "tpm")] = tpm
        if budget is not None:
            budget.held += nanos
        return Reservation(
            key_id=key_id,
            tokens=tokens if limits.tpm is not None else 0,
            nanos=nanos,
            currency=cost.currency,
            tpm=limits.tpm,
            period=period,
        )

    def _take(
        self,
        key_id: str,
        which: Literal["rpm", "tpm"],
        limits: Limits,
        limit: int,
        units: int,
        tokens: int,
        now: float,
        refusals: list[tuple[float, CloudletError]],
    ) -> tuple[float, float]:
        """The bucket's state after taking ``units``; a refusal is appended if it cannot."""
        available = refill(self._buckets.get((key_id, which)), now, limit)
        wait = wait_for(available, limit, units)
        if wait > 0:
            refusals.append((wait, rate_refusal(which, limits, wait, tokens)))
        return available - units, now

    async def settle(self, reservation: Reservation, *, tokens: int, cost: Money) -> None:
        r = reservation
        bucket = self._buckets.get((r.key_id, "tpm"))
        if r.tpm is not None and bucket is not None:
            now = self._clock.now()
            available = refill(bucket, now, r.tpm) + r.tokens - tokens  # give back the unused
            self._buckets[(r.key_id, "tpm")] = (min(float(r.tpm), available), now)
        budget = self._budgets.get(r.key_id)
        if r.period is not None and budget is not None and budget.period == r.period:
            budget.held -= r.nanos
            budget.spent += to_nanos(cost.amount)

    async def ready(self) -> bool:
        return True

    async def budget_state(self, key_id: str, limits: Limits) -> BudgetState | None:
        if limits.budget is None:
            return None
        now = self._clock.now()
        budget = await self._budget(key_id, limits, now)
        currency = limits.budget.currency
        return BudgetState(
            period=budget.period,
            limit=limits.budget,
            spent=Money.from_nanos(budget.spent, currency),
            held=Money.from_nanos(budget.held, currency),
            resets_at=period_window(limits.period, now)[2],
        )

    async def close(self) -> None:
        self._buckets.clear()
        self._budgets.clear()

    async def _budget(self, key_id: str, limits: Limits, now: float) -> _Budget:
        """The key's budget for the current period, seeded from the ledger on first use."""
        assert limits.budget is not None
        period, start, _ = period_window(limits.period, now)
        current = self._budgets.get(key_id)
        if current is not None and current.period == period:
            return current
        spent = Decimal(0)
        if self._seed is not None:
            spent = await self._seed(key_id, start, limits.budget.currency)
        current = self._budgets.get(key_id)  # another request may have seeded it meanwhile
        if current is None or current.period != period:
            current = _Budget(period, to_nanos(spent), 0)
            self._budgets[key_id] = current
        return current
