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

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cloudlet.counters.base import Counters, Reservation
from cloudlet.domain import GenerationRequest
from cloudlet.domain.tokens import estimate_prompt_tokens, prompt_token_bound
from cloudlet.errors import BudgetCurrencyMismatch
from cloudlet.gateway.prices import Prices
from cloudlet.gateway.record import RequestRecord
from cloudlet.gateway.settling import SettleRetries
from cloudlet.ledger.keys import Tenant
from cloudlet.ledger.writer import LedgerWriter, UsageRow
from cloudlet.pricing import Money, Price

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Admission:
    """A request admitted under a key: what was reserved (settled once, by its life)."""

    tenant: Tenant
    model: str
    route: str | None
    prompt_estimate: int
    reservation: Reservation | None
    prices: dict[str, tuple[Price, Price]]
    prompt_bound: int = 0  # what was reserved for: usage above it is charged at it
    max_tokens: int = 0


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

    @property
    def prices(self) -> Prices:
        return self._prices

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

    def record(self, record: RequestRecord) -> None:
        """The ledger's sink: queue ``record``'s row (without awaiting, so that a request
        being cancelled still gets it). A request that named no tenant has no row."""
        if record.team is None:
            return
        self._writer.record(
            UsageRow(
                request_id=record.request_id,
                ts=record.ts,
                key_id=record.key_id,
                team=record.team,
                model=record.model,
                route=record.route,
                target=record.target,
                spilled=record.spilled,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                cost=record.cost,
                cloud_equivalent=record.cloud_equivalent,
                cloud=record.cloud,
                latency_ms=round(record.duration_s * 1000),
                ttft_ms=round(record.ttft_s * 1000) if record.ttft_s is not None else None,
                status=record.status,
                error=record.error if record.status != "ok" else None,
                client_request_id=record.client_request_id,
            )
        )

    async def settle(
        self, admission: Admission, *, tokens: int, cost: Money, request_id: str
    ) -> None:
        """Settle the key's reservation with the real usage. Counters that are down now are
        retried until they answer: the hold is released and the cost counted then, never
        left until the period ends. Completes even when the caller is cancelled (see
        :meth:`Counters.settle`)."""
        reservation = admission.reservation
        if reservation is None:
            return

        async def attempt() -> None:
            await self._counters.settle(reservation, tokens=tokens, cost=cost)

        await self._retries.run(f"request {request_id}", attempt)
