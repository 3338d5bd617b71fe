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

from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from cloudlet.counters.redis_backend import Probe, connect
from cloudlet.pricing import to_nanos

_TTL_S = 40 * 86_400

# KEYS: the route-period hash; ARGV: nanos to hold, limit nanos, TTL seconds. 1: held, 0: refused
_RESERVE = """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local held = tonumber(redis.call('HGET', KEYS[1], 'held') or '0')
if spent + held + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'held', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: the route-period hash; ARGV: held nanos to release, spent nanos to add, TTL seconds
_SETTLE = """
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

    async def reserve(self, key: str, amount: Decimal, limit: Decimal) -> bool:
        args = [to_nanos(amount, up=True), to_nanos(limit), _TTL_S]
        return (
            int(await self._probe.guard(lambda: self._reserve(keys=[self._key(key)], args=args)))
            == 1
        )

    async def settle(self, key: str, reserved: Decimal, actual: Decimal) -> None:
        args = [to_nanos(reserved, up=True), to_nanos(actual), _TTL_S]
        await self._probe.guard(lambda: self._settle(keys=[self._key(key)], args=args))

    async def spent(self, key: str) -> Decimal:
        spent, held = await self._probe.guard(
            lambda: self._redis.hmget(self._key(key), ["spent", "held"])
        )
        return Decimal(int(spent or 0) + int(held or 0)).scaleb(-9)

    async def close(self) -> None:
        await self._redis.aclose()
