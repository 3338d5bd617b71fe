"""Every request priced and written down once: key limits and budgets, cost, the ledger row.

Around the router: before it, the key's rate limits and budget are reserved at the worst case
(estimated prompt plus ``max_tokens``, at the dearest target the request may reach); after it,
however the request ends (finished, failed, cancelled by a client that left), the reservation
is settled with the real usage and exactly one ledger row is queued. Local models are priced
from their hardware cost and the engine's measured throughput (:mod:`cloudlet.pricing`), so a
local request costs something real and can be compared with what a cloud would have charged.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cloudlet.config import ModelSpec
from cloudlet.config.storage import CostSpec
from cloudlet.counters.base import Counters, Reservation
from cloudlet.domain import (
    EngineStats,
    Finished,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    ToolCallDelta,
)
from cloudlet.engines.openai_wire import estimate_prompt_tokens
from cloudlet.errors import CloudletError
from cloudlet.gateway.pricing import price_of
from cloudlet.ledger.keys import Tenant
from cloudlet.ledger.writer import LedgerWriter, Status, UsageRow
from cloudlet.pricing import DEFAULT_REFERENCE, LocalPricer, Money, Price

#: A local model without ``cost:`` is priced as a small 2-vCPU cloud VM (an assumption, shown
#: in the README): enough to make local requests visible, never free.
DEFAULT_LOCAL_COST = CostSpec(hardware_per_hour=Decimal("0.05"))


#: A model the spec does not list (an engine passed in directly): free, default reference.
_UNPRICED = (Price(Decimal(0), Decimal(0), "USD"), DEFAULT_REFERENCE)

#: How long the engines' measured rates are reused before they are read again.
STATS_TTL_S = 1.0


class Prices:
    """The price of each model now: its ``price`` (remote) or its cost model (local).

    A local model's price follows the throughput its engine measured; the engines' stats are
    read at most once per :data:`STATS_TTL_S` (every admitted request asks for prices, and the
    rate moves slowly). A request keeps the price it was admitted with until it settles.
    """

    def __init__(
        self,
        models: Sequence[ModelSpec],
        stats: Callable[[], Mapping[str, EngineStats]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stats = stats
        self._clock = clock
        self._read: tuple[float, Mapping[str, EngineStats]] | None = None  # (until, stats)
        self._fixed: dict[str, tuple[Price, Price]] = {}
        self._local: dict[str, tuple[LocalPricer, Price]] = {}
        for m in models:
            if m.price is not None:
                price = price_of(m.price)
                self._fixed[m.name] = (price, price)
            else:
                cost = m.cost or DEFAULT_LOCAL_COST
                self._local[m.name] = (cost.pricer(), cost.reference())

    def of(self, model: str) -> tuple[Price, Price]:
        """(what it costs, what a reference cloud would charge) for ``model``'s tokens."""
        return self.of_targets((model,))[model]

    def of_targets(self, targets: Sequence[str]) -> dict[str, tuple[Price, Price]]:
        """:meth:`of` for each of ``targets``."""
        out: dict[str, tuple[Price, Price]] = {}
        for target in targets:
            fixed = self._fixed.get(target)
            if fixed is not None:
                out[target] = fixed
                continue
            local = self._local.get(target)
            if local is None:
                out[target] = _UNPRICED
                continue
            measured = self._measured().get(target)
            pricer, reference = local
            out[target] = (pricer.price(measured.tokens_per_second if measured else 0.0), reference)
        return out

    def _measured(self) -> Mapping[str, EngineStats]:
        now = self._clock()
        read = self._read
        if read is None or now >= read[0]:
            read = self._read = (now + STATS_TTL_S, self._stats())
        return read[1]


def new_request_id() -> str:
    """A new request's id: ``req-``, the time in milliseconds (12 hex digits), 80 random bits.

    Time first, like a UUIDv7: the ledger's unique index on ``request_id`` then grows at its
    end instead of at random places, which on SQLite makes a row's insert several times
    cheaper (and keeps doing so as the table grows). The random part keeps ids unique across
    requests in the same millisecond and across replicas.
    """
    return f"req-{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


@dataclass(slots=True, eq=False)
class Admission:
    """A request admitted under a key: what was reserved, to be settled once."""

    tenant: Tenant
    model: str
    route: str | None
    prompt_estimate: int
    reservation: Reservation | None
    prices: dict[str, tuple[Price, Price]]
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.monotonic)
    settled: bool = False


class Accounting:
    def __init__(self, counters: Counters, writer: LedgerWriter, prices: Prices) -> None:
        self._counters = counters
        self._writer = writer
        self._prices = prices

    async def admit(
        self,
        tenant: Tenant,
        request: GenerationRequest | None,
        *,
        model: str,
        route: str | None,
        targets: Sequence[str],
        max_tokens: int,
        prompt_estimate: int | None = None,
    ) -> Admission:
        """Reserve the worst case against the key's limits (429 when they refuse)."""
        estimate = prompt_estimate
        if estimate is None:
            estimate = estimate_prompt_tokens(request) if request is not None else 0
        prices = self._prices.of_targets(targets)
        reservation = None
        limits = tenant.limits
        if tenant.key_id is not None and not limits.unlimited:
            budget = limits.budget
            # The dearest target the request may reach; without a budget, money is not counted.
            worst: Money | None = None
            if budget is not None:
                for price, _ in prices.values():
                    candidate = price.worst_case(estimate, max_tokens)
                    if worst is None or candidate.amount > worst.amount:
                        worst = candidate
            if worst is None:
                worst = Money.zero(budget.currency if budget is not None else "USD")
            reservation = await self._counters.reserve(
                tenant.key_id, limits, tokens=estimate + max_tokens, cost=worst
            )
        return Admission(tenant, model, route, estimate, reservation, prices)

    async def settle(
        self,
        admission: Admission,
        *,
        target: str | None,
        spilled: bool,
        prompt_tokens: int,
        completion_tokens: int,
        status: Status,
        ttft_s: float | None = None,
        error: str | None = None,
    ) -> None:
        """Queue the one ledger row and settle the reservation with the real usage.

        The row is queued first (without awaiting): a client that leaves cancels its request,
        and even a cancellation that arrives during the counters' settle cannot lose the row.
        The counters' settle itself completes even then (see :meth:`Counters.settle`).
        """
        if admission.settled:
            return
        admission.settled = True
        priced = admission.prices.get(target or "")
        if priced is None:
            priced = self._prices.of(target or "")
        price, reference = priced
        cost = price.cost(prompt_tokens, completion_tokens)
        if reference.currency == cost.currency:
            cloud_equivalent = reference.cost(prompt_tokens, completion_tokens)
        else:
            cloud_equivalent = cost  # no reference in this currency: record the cost itself
        try:
            self._writer.record(
                UsageRow(
                    request_id=admission.request_id,
                    ts=datetime.now(UTC),
                    key_id=admission.tenant.key_id,
                    team=admission.tenant.team,
                    model=admission.model,
                    route=admission.route,
                    target=target,
                    spilled=spilled,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    cost=cost,
                    cloud_equivalent=cloud_equivalent,
                    latency_ms=round((time.monotonic() - admission.started) * 1000),
                    ttft_ms=round(ttft_s * 1000) if ttft_s is not None else None,
                    status=status,
                    error=error,
                )
            )
        finally:
            if admission.reservation is not None:
                await self._counters.settle(
                    admission.reservation, tokens=prompt_tokens + completion_tokens, cost=cost
                )

    async def failed(self, admission: Admission, exc: BaseException) -> None:
        """The request failed before any stream existed: release, and record the failure."""
        code = exc.code if isinstance(exc, CloudletError) else type(exc).__name__
        status: Status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"
        await self.settle(
            admission,
            target=None,
            spilled=False,
            prompt_tokens=0,
            completion_tokens=0,
            status=status,
            error=code,
        )


class Accounted(AsyncGenerator[GenerationEvent, None]):
    """Passes a stream through and settles its admission exactly once when it ends."""

    def __init__(
        self,
        events: AsyncGenerator[GenerationEvent, None],
        accounting: Accounting,
        admission: Admission,
        *,
        target: str,
        spilled: bool,
    ) -> None:
        self._events = events
        self._accounting = accounting
        self._admission = admission
        self._target = target
        self._spilled = spilled
        self._deltas = 0
        self._ttft: float | None = None
        self._finished: Finished | None = None
        self._done = False

    def __aiter__(self) -> Accounted:
        return self

    async def __anext__(self) -> GenerationEvent:
        try:
            event = await self._events.__anext__()
        except StopAsyncIteration:
            await self._end("ok" if self._finished else "error", None)
            raise
        except asyncio.CancelledError:
            await self._end("cancelled", "cancelled")
            raise
        except CloudletError as exc:
            await self._end("error", exc.code or exc.type)
            raise
        except BaseException as exc:
            await self._end("error", type(exc).__name__)
            raise
        if isinstance(event, TextDelta | ToolCallDelta):
            if self._ttft is None:
                self._ttft = time.monotonic() - self._admission.started
            self._deltas += 1
        elif isinstance(event, Finished):
            self._finished = event
            status: Status = "cancelled" if event.reason == "cancelled" else "ok"
            await self._end(status, None)
        return event

    async def asend(self, value: None) -> GenerationEvent:
        return await self.__anext__()

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None) -> GenerationEvent:
        await self.aclose()
        raise typ if val is None else val

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            await self._end("cancelled", "client closed the stream")

    async def _end(self, status: Status, error: str | None) -> None:
        if self._done:
            return
        self._done = True
        if self._finished is not None:
            usage = self._finished.usage
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
        else:  # broke off before the usage arrived: charge what was sent
            prompt, completion = self._admission.prompt_estimate, self._deltas
        await self._accounting.settle(
            self._admission,
            target=self._target,
            spilled=self._spilled,
            prompt_tokens=prompt,
            completion_tokens=completion,
            status=status,
            ttft_s=self._ttft,
            error=error,
        )
