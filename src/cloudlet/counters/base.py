"""What every counters backend shares: limits, reservations, the protocol and the arithmetic.

Rate limits are **token buckets**, the algorithm OpenAI and Anthropic document for their own
limits: a key with ``rpm: 60`` holds up to 60 requests, spends one per request and earns them
back continuously, one per second. A bucket is two numbers per key (tokens, last update), it
answers an exact ``Retry-After``, takes weighted costs (prompt + max_tokens against ``tpm``)
and can be refunded at settle time, which fixed or sliding windows do less well. Like a fixed
window, a full bucket plus a minute of refill admits up to 2N in the first 60 s after an idle
period; after that, N per minute.

Budgets are per UTC calendar day or month. A budget holds two sums per period: ``spent``
(settled, real costs) and ``held`` (outstanding reservations). A request is admitted only if
``spent + held + worst_case <= limit``, atomically; so a burst at the edge of a budget cannot
overspend at all as long as real costs stay within their reservations (the worst case is
priced before the call, and :class:`~cloudlet.pricing.Price.worst_case` rounds up). A
replica that dies between reserve and settle leaves its holds in place until the period ends:
that errs on refusing, never on overspending.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, Protocol

from cloudlet.errors import BudgetExceeded, CloudletError, RateLimited
from cloudlet.pricing import Money, to_nanos

Period = Literal["day", "month"]
WINDOW_S = 60.0
_EPSILON = 1e-9  # float refill arithmetic must not refuse the last whole token

#: Reads what a key has already spent since a period's start (from the ledger), in the given
#: currency; used once per key and period, so that a restart does not forget the month so far.
BudgetSeed = Callable[[str, datetime, str], Awaitable[Decimal]]


@dataclass(frozen=True, slots=True)
class Limits:
    """A key's limits; ``None`` means unlimited. ``budget`` is per ``period``."""

    rpm: int | None = None
    tpm: int | None = None
    budget: Money | None = None
    period: Period = "month"

    @property
    def unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None and self.budget is None


@dataclass(frozen=True, slots=True)
class Reservation:
    """What :meth:`Counters.reserve` took; hand it back to :meth:`Counters.settle` once."""

    key_id: str
    tokens: int
    nanos: int
    currency: str
    tpm: int | None
    period: str | None
    #: Unique per reservation: a backend makes settling twice (a retry) count once.
    id: str = field(default_factory=lambda: secrets.token_hex(8))


@dataclass(frozen=True, slots=True)
class BudgetState:
    period: str
    limit: Money
    spent: Money
    held: Money
    resets_at: datetime


class Counters(Protocol):
    """Rate limits and budgets, shared by every request (and, with Redis, every replica)."""

    async def reserve(
        self, key_id: str, limits: Limits, *, tokens: int, cost: Money
    ) -> Reservation:
        """Take one request and ``tokens`` (prompt + max_tokens) from the rate limits and hold
        ``cost`` (the worst case) against the budget, all or nothing.

        Raises :class:`~cloudlet.errors.RateLimited` or :class:`~cloudlet.errors.BudgetExceeded`
        (both 429 with ``retry_after``); when several limits refuse, the one with the longest
        wait is reported. A store that does not answer (in bounded time) raises
        :class:`~cloudlet.errors.StorageUnavailable` (503 with ``retry_after``).
        """
        ...

    async def settle(self, reservation: Reservation, *, tokens: int, cost: Money) -> None:
        """Replace the reservation by what the request really used; call exactly once.

        Completes even if the awaiting task is cancelled meanwhile (a client that leaves
        cancels its request, but its budget must still be settled): a backend that has to
        wait for I/O shields that work; one that does not wait costs its callers nothing.
        A store that does not answer raises :class:`~cloudlet.errors.StorageUnavailable`;
        settling the same reservation again (a retry) then counts it once.
        """
        ...

    async def budget_state(self, key_id: str, limits: Limits) -> BudgetState | None:
        """The key's budget in the current period, or ``None`` without a budget."""
        ...

    async def ready(self) -> bool:
        """Whether the store answers now (``/ready`` is 503 while it does not)."""
        ...

    async def close(self) -> None: ...


#: The last window computed per period kind, with its bounds as timestamps: every reserve asks.
_windows: dict[str, tuple[float, float, tuple[str, datetime, datetime]]] = {}


def period_window(period: Period, now: float) -> tuple[str, datetime, datetime]:
    """The UTC calendar period containing ``now``: (id, start, end)."""
    known = _windows.get(period)
    if known is not None and known[0] <= now < known[1]:
        return known[2]
    window = _period_window(period, now)
    _windows[period] = (window[1].timestamp(), window[2].timestamp(), window)
    return window


def _period_window(period: Period, now: float) -> tuple[str, datetime, datetime]:
    at = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        end = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
        return start.strftime("%Y-%m-%d"), start, end
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.strftime("%Y-%m"), start, end


def refill(state: tuple[float, float] | None, now: float, limit: int) -> float:
    """The tokens in a bucket of capacity ``limit`` at ``now``; ``state`` is (tokens, when)."""
    if state is None:
        return float(limit)
    tokens, at = state
    return min(float(limit), tokens + max(0.0, now - at) * limit / WINDOW_S)


def wait_for(available: float, limit: int, cost: int) -> float:
    """Seconds until ``cost`` tokens are available; 0 means now."""
    missing = cost - available
    return 0.0 if missing <= _EPSILON else missing * WINDOW_S / limit


def budget_nanos(limits: Limits, cost: Money) -> tuple[int, int]:
    """(limit, reservation) in nanos; the cost must be in the budget's currency."""
    assert limits.budget is not None
    if cost.currency != limits.budget.currency:
        raise ValueError(
            f"the request is priced in {cost.currency}, the key's budget is in "
            f"{limits.budget.currency}"
        )
    return limits.budget.nanos, to_nanos(cost.amount, up=True)


def rate_refusal(
    which: Literal["rpm", "tpm"], limits: Limits, over_s: float, tokens: int
) -> RateLimited:
    limit = limits.rpm if which == "rpm" else limits.tpm
    unit = "requests" if which == "rpm" else "tokens"
    if which == "tpm" and limit is not None and tokens > limit:
        message = (
            f"Request too large: it may use {tokens} tokens (prompt + max_tokens); this key's "
            f"limit is {limit} tokens per minute. Lower max_tokens or shorten the prompt."
        )
        return RateLimited(message, limit=which, retry_after=int(WINDOW_S))
    seconds = max(1, math.ceil(over_s))
    message = (
        f"Rate limit reached for this key on {unit} per minute ({which.upper()}): limit {limit}. "
        f"Please try again in {seconds}s."
    )
    return RateLimited(message, limit=which, retry_after=seconds)


def budget_refusal(limits: Limits, *, fits_when_settled: bool, reset_in_s: float) -> BudgetExceeded:
    assert limits.budget is not None
    adjective = "daily" if limits.period == "day" else "monthly"
    if fits_when_settled:
        # Only requests still in flight stand in the way; they settle within seconds.
        return BudgetExceeded(
            f"This key's {adjective} budget of {limits.budget} is fully reserved by "
            "requests in flight. Please try again in a moment.",
            retry_after=1,
        )
    return BudgetExceeded(
        f"This key's {adjective} budget of {limits.budget} is spent; it resets at the "
        f"start of the next UTC {limits.period}.",
        retry_after=math.ceil(reset_in_s),
    )


def worst(refusals: list[tuple[float, CloudletError]]) -> CloudletError | None:
    """The refusal with the longest wait (a client must wait for every limit anyway)."""
    return max(refusals, key=lambda r: r[0])[1] if refusals else None
