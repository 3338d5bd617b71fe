"""Rate limits (requests and tokens per minute) and budgets, in memory or in Redis.

The gateway calls, per request, once it knows the tenant and the price::

    reservation = await counters.reserve(key_id, limits, tokens=prompt + max_tokens,
                                         cost=price.worst_case(prompt, max_tokens))
    ...                                   # call the target, stream
    await counters.settle(reservation, tokens=used, cost=price.cost(prompt, completion))

``reserve`` raises :class:`~cloudlet.errors.RateLimited` or
:class:`~cloudlet.errors.BudgetExceeded` (429 with Retry-After). Core package: no web
framework; the Redis client is imported only when a Redis URL is opened.
"""

from cloudlet.counters.base import (
    BudgetSeed,
    BudgetState,
    Counters,
    Limits,
    Period,
    Reservation,
    period_window,
)
from cloudlet.counters.clock import Clock, FakeClock, SystemClock
from cloudlet.counters.factory import open_counters
from cloudlet.counters.memory import MemoryCounters

__all__ = [
    "BudgetSeed",
    "BudgetState",
    "Clock",
    "Counters",
    "FakeClock",
    "Limits",
    "MemoryCounters",
    "Period",
    "Reservation",
    "SystemClock",
    "open_counters",
    "period_window",
]
