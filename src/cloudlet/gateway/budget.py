"""Cloud budgets: reserve the worst case before a cloud call, settle the real cost after.

A route's spend lives in a :class:`BudgetStore` under one key per calendar period (UTC day or
month). A reservation succeeds only while settled spend plus open reservations plus itself stay
within the limit, so concurrent requests at the edge cannot together overspend; and a settled
cost never exceeds its reservation (the reservation prices an upper bound of the prompt's
tokens plus ``max_tokens``, and usage above that bound is charged at the bound), so the worst
case overspend is zero.

A route's budget caps what its ``cloud: true`` targets cost, however a request reaches them:
a call through the route is charged to its budget; a call that names the cloud model itself
(or comes through a route without a budget) is charged to every budget that covers the model
(a :class:`Hold` on each, all or nothing), so that no budget can be bypassed by naming the
model. Two budgeted routes over one cloud model each count their own calls.

A period's spend is seeded, the first time the store sees it, from what the ledger says these
targets cost since the period began: a restart does not forget the day. The in-memory store
serves one process; with Redis counters the app passes
:class:`~cloudlet.counters.route_budgets.RedisRouteBudgets`, one budget for every replica.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from cloudlet.config.remote import CloudBudgetSpec
from cloudlet.errors import BudgetExhausted
from cloudlet.gateway.pricing import Money
from cloudlet.gateway.settling import SettleRetries

#: What the targets in ``targets`` cost since ``since`` in ``currency``, from the ledger, except
#: what was sent through the routes named last (they have budgets of their own).
RouteSeed = Callable[[Sequence[str], dt.datetime, str, Sequence[str]], Awaitable[Decimal]]
#: What a period already spent, read once when a store first sees the period.
Seed = Callable[[], Awaitable[Decimal]]


class BudgetStore(Protocol):
    async def reserve(
        self, key: str, amount: Decimal, limit: Decimal, seed: Seed | None = None
    ) -> bool:
        """Hold ``amount`` under ``key`` if spent + held + amount <= limit; say whether it did.
        A ``key`` the store has not seen starts from ``seed()`` (else from zero)."""
        ...

    async def settle(
        self, key: str, reserved: Decimal, actual: Decimal, settle_id: str = ""
    ) -> None:
        """Release a hold of ``reserved`` and add ``actual`` to the spend; a store that can
        lose replies counts a repeated ``settle_id`` (a retry) once."""
        ...

    async def spent(self, key: str) -> Decimal:
        """Settled spend plus open holds."""
        ...


class InMemoryBudgetStore:
    def __init__(self) -> None:
        self._spent: dict[str, Decimal] = {}
        self._held: dict[str, Decimal] = {}

    async def reserve(
        self, key: str, amount: Decimal, limit: Decimal, seed: Seed | None = None
    ) -> bool:
        if key not in self._spent:
            seeded = await seed() if seed is not None else Decimal(0)
            self._spent.setdefault(key, seeded)  # another request may have seeded it meanwhile
        # From here on no await: check-and-hold is atomic.
        committed = self._spent.get(key, Decimal(0)) + self._held.get(key, Decimal(0))
        if committed + amount > limit:
            return False
        self._held[key] = self._held.get(key, Decimal(0)) + amount
        return True

    async def settle(
        self, key: str, reserved: Decimal, actual: Decimal, settle_id: str = ""
    ) -> None:
        self._held[key] = self._held.get(key, Decimal(0)) - reserved
        self._spent[key] = self._spent.get(key, Decimal(0)) + actual

    async def spent(self, key: str) -> Decimal:
        return self._spent.get(key, Decimal(0)) + self._held.get(key, Decimal(0))


@dataclass(eq=False)
class Reservation:
    key: str
    amount: Money
    settled: bool = field(default=False)
    id: str = field(default_factory=lambda: secrets.token_hex(8))


class CloudBudget:
    """One route's cloud budget, over its cloud targets ``targets``."""

    def __init__(
        self,
        route: str,
        spec: CloudBudgetSpec,
        store: BudgetStore,
        clock: Callable[[], float],
        targets: Sequence[str] = (),
        retries: SettleRetries | None = None,
    ) -> None:
        self.route = route
        self.spec = spec
        self.targets = tuple(targets)
        self.other_routes: tuple[str, ...] = ()  # budgeted routes whose calls are not ours
        self._store = store
        self._clock = clock
        self._retries = retries
        self.seed: RouteSeed | None = None  # set once the ledger is open

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
        if not await self._store.reserve(key, amount.amount, self.spec.limit, self._seeder()):
            return None
        return Reservation(key, amount)

    def _seeder(self) -> Seed | None:
        read = self.seed
        if read is None:
            return None
        now = self._now()
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.spec.period == "month":
            start = start.replace(day=1)
        targets, currency, others = self.targets, self.spec.currency, self.other_routes

        async def seed() -> Decimal:
            return await read(targets, start, currency, others)

        return seed

    async def settle(self, reservation: Reservation, actual: Money) -> None:
        """Exactly once per reservation; later calls do nothing."""
        if reservation.settled:
            return
        reservation.settled = True
        key, held, settle_id = reservation.key, reservation.amount.amount, reservation.id

        async def attempt() -> None:
            await self._store.settle(key, held, actual.amount, settle_id)

        if self._retries is None:
            await attempt()
        else:  # a store that is down now is retried until it answers
            await self._retries.run(f"route {self.route!r}'s cloud budget", attempt)

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


@dataclass(eq=False)
class Hold:
    """A cloud call's reservations on every budget that covers its target; settled once."""

    parts: list[tuple[CloudBudget, Reservation]]

    async def settle(self, actual: Money) -> None:
        """Charge ``actual`` to every budget (each settles at most once); a failure to reach
        the store for one does not keep the others from settling."""
        failed: BaseException | None = None
        for budget, reservation in self.parts:
            try:
                await budget.settle(reservation, actual)
            except Exception as exc:
                failed = exc
        if failed is not None:
            raise failed

    async def release(self) -> None:
        """Give every reservation back unused (the call never ran)."""
        if self.parts:
            await self.settle(Money(Decimal(0), self.parts[0][1].amount.currency))


async def hold(budgets: Sequence[CloudBudget], amount: Money) -> Hold | CloudBudget:
    """Reserve ``amount`` on each of ``budgets``: the :class:`Hold`, or the first budget that
    refused (the ones taken before it are released)."""
    taken = Hold([])
    for budget in budgets:
        try:
            reservation = await budget.reserve(amount)
        except BaseException:
            await taken.release()
            raise
        if reservation is None:
            await taken.release()
            return budget
        taken.parts.append((budget, reservation))
    return taken
