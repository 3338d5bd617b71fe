"""Every request priced and written down once: key limits and budgets, cost, the ledger row.

Around the router: before it, the key's rate limits and budget are reserved at the worst case
(an upper bound of the prompt's tokens, from its UTF-8 length, plus ``max_tokens``, at the
dearest target the request may reach); after it, however the request ends (finished, failed,
cancelled by a client that left), the reservation is settled with the real usage, capped at
that bound, and exactly one ledger row is queued. So a settled cost never exceeds its
reservation and a budget is never overspent. Local models are priced from their hardware cost
and the engine's measured prefill and decode rates (:mod:`cloudlet.pricing`), so a local request
costs something real and can be compared with what a cloud would have charged for the same
tokens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloudlet.counters.base import Counters, Reservation
from cloudlet.domain import (
    Finished,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    ToolCallDelta,
)
from cloudlet.engines.openai_wire import estimate_prompt_tokens, prompt_token_bound
from cloudlet.errors import BudgetCurrencyMismatch, CloudletError
from cloudlet.gateway.prices import Prices
from cloudlet.gateway.settling import SettleRetries
from cloudlet.ledger.keys import Tenant
from cloudlet.ledger.writer import LedgerWriter, Status, UsageRow
from cloudlet.pricing import Money, Price

log = logging.getLogger(__name__)


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
    prompt_bound: int = 0  # what was reserved for: usage above it is charged at it
    max_tokens: int = 0
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.monotonic)
    settled: bool = False


class Accounting:
    def __init__(
        self,
        counters: Counters,
        writer: LedgerWriter,
        prices: Prices,
        *,
        currency: str = "USD",
        retries: SettleRetries | None = None,
    ) -> None:
        self._counters = counters
        self._writer = writer
        self._prices = prices
        self._currency = currency
        self._retries = retries or SettleRetries()

    async def close(self) -> None:
        """Give settles still waiting for the counters a last chance (before they close)."""
        await self._retries.close()

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
        prompt_bound: int | None = None,
    ) -> Admission:
        """Reserve the worst case against the key's limits (429 when they refuse).

        Rate limits count the prompt's estimate (``prompt_estimate``, about four characters a
        token); money counts its upper bound (``prompt_bound``, one token a byte), so that
        whatever the script the real cost cannot exceed what was held.
        """
        estimate = prompt_estimate
        if estimate is None:
            estimate = estimate_prompt_tokens(request) if request is not None else 0
        bound = prompt_bound
        if bound is None:
            bound = prompt_token_bound(request) if request is not None else estimate
        bound = max(bound, estimate)
        prices = self._prices.of_targets(targets)
        reservation = None
        limits = tenant.limits
        if tenant.key_id is not None and not limits.unlimited:
            budget = limits.budget
            if budget is not None and budget.currency != self._currency:
                raise BudgetCurrencyMismatch(
                    f"This key's budget is in {budget.currency}, but this deployment bills in "
                    f"{self._currency}; an admin must re-create the key with a budget in "
                    f"{self._currency}."
                )
            # The dearest target the request may reach; without a budget, money is not counted.
            worst: Money | None = None
            if budget is not None:
                for price, _ in prices.values():
                    candidate = price.worst_case(bound, max_tokens)
                    if worst is None or candidate.amount > worst.amount:
                        worst = candidate
            if worst is None:
                worst = Money.zero(budget.currency if budget is not None else "USD")
            reservation = await self._counters.reserve(
                tenant.key_id, limits, tokens=estimate + max_tokens, cost=worst
            )
        return Admission(
            tenant,
            model,
            route,
            estimate,
            reservation,
            prices,
            prompt_bound=bound,
            max_tokens=max_tokens,
        )

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
        prompt_tokens, completion_tokens = _within(
            admission, target, prompt_tokens, completion_tokens
        )
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
                    cloud=self._prices.is_cloud(target or ""),
                    latency_ms=round((time.monotonic() - admission.started) * 1000),
                    ttft_ms=round(ttft_s * 1000) if ttft_s is not None else None,
                    status=status,
                    error=error,
                )
            )
        finally:
            reservation = admission.reservation
            if reservation is not None:
                tokens = prompt_tokens + completion_tokens

                async def attempt() -> None:
                    await self._counters.settle(reservation, tokens=tokens, cost=cost)

                # Counters that are down now are retried until they answer: the hold is
                # released and the cost counted then, never left until the period ends.
                await self._retries.run(f"request {admission.request_id}", attempt)

    def refused(self, tenant: Tenant, model: str, route: str | None, exc: CloudletError) -> None:
        """A known tenant's request refused before admission (403, 404, 429, 503): one ledger
        row of cost 0, ``status`` ``refused`` and the refusal's code as ``error``. Queued
        without awaiting, like every row."""
        zero = Money.zero(self._currency)  # the deployment's currency
        self._writer.record(
            UsageRow(
                request_id=new_request_id(),
                ts=datetime.now(UTC),
                key_id=tenant.key_id,
                team=tenant.team,
                model=model,
                route=route,
                target=None,
                spilled=False,
                prompt_tokens=0,
                completion_tokens=0,
                cost=zero,
                cloud_equivalent=zero,
                latency_ms=0,
                ttft_ms=None,
                status="refused",
                error=exc.code or exc.type,
            )
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


def _within(
    admission: Admission, target: str | None, prompt: int, completion: int
) -> tuple[int, int]:
    """Token counts fit to charge: never negative, never above what was reserved for (an
    engine that reports more is wrong, and charging more would overspend the budget)."""
    fitted_prompt = max(0, prompt)
    fitted_completion = max(0, completion)
    if admission.prompt_bound:
        fitted_prompt = min(fitted_prompt, admission.prompt_bound)
    if admission.max_tokens:
        fitted_completion = min(fitted_completion, admission.max_tokens)
    if (fitted_prompt, fitted_completion) != (prompt, completion):
        log.warning(
            "%s reported usage %d+%d outside the reserved bound; charged %d+%d",
            target,
            prompt,
            completion,
            fitted_prompt,
            fitted_completion,
        )
    return fitted_prompt, fitted_completion


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
        else:  # broke off before the usage arrived: the prompt's bound, a token per chunk sent
            prompt, completion = self._admission.prompt_bound, self._deltas
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
