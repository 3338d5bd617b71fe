"""Open the counters the spec names: ``memory`` (default) or a ``redis://`` / ``rediss://`` URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudlet.counters.base import BudgetSeed, Counters
from cloudlet.counters.clock import Clock
from cloudlet.counters.memory import MemoryCounters

if TYPE_CHECKING:
    from cloudlet.counters.route_budgets import RedisRouteBudgets


def open_counters(
    url: str = "memory",
    *,
    clock: Clock | None = None,
    seed: BudgetSeed | None = None,
    prefix: str = "cloudlet",
) -> Counters:
    """Counters for ``url``. Nothing connects yet: Redis opens its pool on first use.

    ``seed`` reads a key's spending so far in a period from the ledger (see
    :meth:`cloudlet.ledger.store.Ledger.spent_since`), so budgets survive restarts.
    """
    if url == "memory":
        return MemoryCounters(clock=clock, seed=seed)
    if url.startswith(("redis://", "rediss://", "unix://")):
        # Imported here so that a memory-only deployment never loads the Redis client.
        from cloudlet.counters.redis_backend import RedisCounters

        return RedisCounters.from_url(url, prefix=prefix, clock=clock, seed=seed)
    raise ValueError(f"counters: expected 'memory' or a redis:// URL, got {url.split(':')[0]!r}")


def open_route_budgets(url: str, *, prefix: str = "cloudlet") -> RedisRouteBudgets | None:
    """Where routes' cloud budgets live: Redis when the counters do (shared by every gateway
    replica), else None: the gateway keeps them in its own memory (one replica)."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    from cloudlet.counters.route_budgets import RedisRouteBudgets

    return RedisRouteBudgets.from_url(url, prefix=prefix)
