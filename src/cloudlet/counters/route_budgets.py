"""Routes' cloud budgets in Redis, shared by every gateway replica.

A route's ``cloud_budget`` must hold for the whole deployment, not per process: with budgets in
each replica's memory, three gateway pods would spend up to three times the budget (and a
restart would forget what was spent). With ``storage: {counters: "redis://..."}`` the gateway's
route budgets live here instead, one hash per route and period (``spent`` and ``held``, in
integer nanos), checked and reserved by one Lua script so that two replicas can never both take
the last cent. The period is part of the key, which expires 40 days after its last use.
Calls are bounded and a Redis outage raises :class:`~cloudlet.errors.StorageUnavailable`, as
for the counters (see :mod:`cloudlet.counters.redis_backend`).

This implements the gateway's ``BudgetStore`` protocol (reserve the worst case, settle the
real cost); see :mod:`cloudlet.gateway.budget`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from cloudlet.counters.redis_backend import Probe, connect
from cloudlet.pricing import to_nanos

_TTL_S = 40 * 86_400
_SETTLED_TTL_S = 600  # as the counters' settle markers: retries come well within it

# KEYS: the route-period hash; ARGV: nanos to hold, limit nanos, TTL seconds, seed nanos (-1:
# not read yet). 1: held, 0: refused, 2: a new period whose seed must be read first
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if tonumber(ARGV[4]) < 0 then return 2 end
  redis.call('HSET', KEYS[1], 'spent', ARGV[4], 'held', 0)
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local held = tonumber(redis.call('HGET', KEYS[1], 'held') or '0')
if spent + held + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'held', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: the route-period hash, the settle's marker; ARGV: held nanos to release, spent nanos to
# add, TTL seconds, the marker's TTL. A period Redis lost is left alone: its next reserve
# re-seeds it from the ledger. A settle already applied (its marker is set) does nothing.
_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SET', KEYS[2], 1, 'NX', 'EX', ARGV[4]) == false then return 1 end
redis.call('HINCRBY', KEYS[1], 'held', -tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 0
"""


class RedisRouteBudgets:
    """Route budgets in Redis; close it to disconnect."""

    def __init__(self, client: Redis, *, prefix: str = "cloudlet") -> None:
        self._redis = client
        self._prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._probe = Probe(client, what="route budgets")

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisRouteBudgets:
        """Connect lazily (the first command opens the pool)."""
        return cls(connect(url), **kwargs)

    async def ready(self) -> bool:
        """Whether Redis answers now (``/ready``); cached for a second."""
        return await self._probe.ready()

    def _key(self, key: str) -> str:
        return f"{self._prefix}:route-budget:{{{key}}}"

    async def reserve(
        self,
        key: str,
        amount: Decimal,
        limit: Decimal,
        seed: Callable[[], Awaitable[Decimal]] | None = None,
    ) -> bool:
        """As :class:`~cloudlet.gateway.budget.BudgetStore`; a period Redis does not hold (a
        new one, or Redis lost it) starts from ``seed()``, read once, by whichever replica
        gets there first."""
        keys = [self._key(key)]
        args = [to_nanos(amount, up=True), to_nanos(limit), _TTL_S, -1]
        result = int(await self._probe.guard(lambda: self._reserve(keys=keys, args=args)))
        if result == 2:
            args[3] = to_nanos(await seed()) if seed is not None else 0
            result = int(await self._probe.guard(lambda: self._reserve(keys=keys, args=args)))
        return result == 1

    async def settle(
        self, key: str, reserved: Decimal, actual: Decimal, settle_id: str = ""
    ) -> None:
        """Release a hold and add the real cost; settling the same ``settle_id`` again (a
        retry whose first reply was lost) counts once."""
        marker = (
            f"{self._prefix}:route-budget-settled:{{{key}}}:{settle_id or secrets.token_hex(8)}"
        )
        keys = [self._key(key), marker]
        args = [to_nanos(reserved, up=True), to_nanos(actual), _TTL_S, _SETTLED_TTL_S]
        # Shielded: a request cancelled by its client must still give its hold back.
        await asyncio.shield(self._probe.guard(lambda: self._settle(keys=keys, args=args)))

    async def spent(self, key: str) -> Decimal:
        spent, held = await self._probe.guard(
            lambda: self._redis.hmget(self._key(key), ["spent", "held"])
        )
        return Decimal(int(spent or 0) + int(held or 0)).scaleb(-9)

    async def close(self) -> None:
        await self._redis.aclose()
