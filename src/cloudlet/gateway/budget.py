"""Cloud budgets: reserve the worst case before a cloud call, settle the real cost after.

A route's spend lives in a :class:`BudgetStore` under one key per calendar period (UTC day or
month). A reservation succeeds only while settled spend plus open reservations plus itself stay
within the limit, so concurrent requests at the edge cannot together overspend; the only
overspend possible is a settled cost above its reservation (a prompt longer than estimated).
The in-memory store serves one process; with Redis counters the app passes
:class:`~cloudlet.counters.route_budgets.RedisRouteBudgets`, one budget for every replica.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from cloudlet.config.remote import CloudBudgetSpec
from cloudlet.errors import BudgetExhausted
from cloudlet.gateway.pricing import Money


class BudgetStore(Protocol):
    async def reserve(self, key: str, amount: Decimal, limit: Decimal) -> bool:
        """Hold ``amount`` under ``key`` if spent + held + amount <= limit; say whether it did."""
        ...

    async def settle(self, key: str, reserved: Decimal, actual: Decimal) -> None:
        """Release a hold of ``reserved`` and add ``actual`` to the spend."""
        ...

    async def spent(self, key: str) -> Decimal:
        """Settled spend plus open holds."""
        ...


class InMemoryBudgetStore:
    def __init__(self) -> None:
        self._spent: dict[str, Decimal] = {}
        self._held: dict[str, Decimal] = {}

    async def reserve(self, key: str, amount: Decimal, limit: Decimal) -> bool:
        committed = self._spent.get(key, Decimal(0)) + self._held.get(key, Decimal(0))
        if committed + amount > limit:
            return False
        self._held[key] = self._held.get(key, Decimal(0)) + amount
        return True

    async def settle(self, key: str, reserved: Decimal, actual: Decimal) -> None:
        self._held[key] = self._held.get(key, Decimal(0)) - reserved
        self._spent[key] = self._spent.get(key, Decimal(0)) + actual

    async def spent(self, key: str) -> Decimal:
        return self._spent.get(key, Decimal(0)) + self._held.get(key, Decimal(0))


@dataclass(eq=False)
class Reservation:
    key: str
    amount: Money
    settled: bool = field(default=False)


class CloudBudget:
    """One route's cloud budget."""

    def __init__(
        self, route: str, spec: CloudBudgetSpec, store: BudgetStore, clock: Callable[[], float]
    ) -> None:
        self.route = route
        self.spec = spec
        self._store = store
        self._clock = clock

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), tz=dt.UTC)

    def key(self) -> str:
        now = self._now()
        period = now.strftime("%Y-%m-%d" if self.spec.period == "day" else "%Y-%m")
        return f"{self.route}:{period}"

    async def reserve(self, amount: Money) -> Reservation | None:
        if amount.currency != self.spec.currency:  # the spec forbids it; never guess a rate
            raise ValueError(f"cannot charge {amount} to a budget in {self.spec.currency}")
        key = self.key()
        if not await self._store.reserve(key, amount.amount, self.spec.limit):
            return None
        return Reservation(key, amount)

    async def settle(self, reservation: Reservation, actual: Money) -> None:
        """Exactly once per reservation; later calls do nothing."""
        if reservation.settled:
            return
        reservation.settled = True
        await self._store.settle(reservation.key, reservation.amount.amount, actual.amount)

    async def spent(self) -> Money:
        return Money(await self._store.spent(self.key()), self.spec.currency)

    def retry_after(self) -> int:
        """Seconds until the next period starts (and the budget with it)."""
        now = self._now()
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.spec.period == "day":
            nxt = start + dt.timedelta(days=1)
        else:
            nxt = (start.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        return max(1, int((nxt - now).total_seconds()) + 1)

    def exhausted(self, local_wait_s: float | None = None) -> BudgetExhausted:
        """The 429; Retry-After is when local capacity frees up, if sooner than the reset."""
        retry_after = self.retry_after()
        if local_wait_s is not None:
            retry_after = min(retry_after, int(local_wait_s) + 1)
        limit = Money(self.spec.limit, self.spec.currency)
        per = "day" if self.spec.period == "day" else "month"
        return BudgetExhausted(
            f"The cloud budget of route {self.route!r} ({limit} per {per}) is spent and local "
            "capacity cannot take this request now; retry after the period resets or later.",
            retry_after=retry_after,
        )
