"""Counters in Redis, shared by every gateway replica (``storage: {counters: "redis://..."}``).

Each check-and-reserve is one Lua script, which Redis runs atomically: two replicas can never
both take the last request of a minute or the last cent of a budget. One round trip per
reserve and one per settle; the first request of a budget period takes one more, to seed the
period's spending from the ledger.

Keys are ``<prefix>:{<key id>}:rpm|tpm|budget:<period>:<id>``; the braces are a Redis Cluster
hash tag, so one API key's counters live in one slot (a script may only touch one slot).
Rate buckets expire once full again (a missing bucket is a full one), budgets two days
after their period ends.

Money travels as integer nanos (1e-9). Lua numbers are doubles, exact to 2^53 nanos, so a
single budget period may hold up to about 9 million currency units.

Outages: every command is bounded (connect 1 s, reply 1 s, one quick retry, 2 s in all; a
URL's ``socket_timeout`` / ``socket_connect_timeout`` override the first two), and a Redis that
is unreachable, hangs or refuses raises :class:`~cloudlet.errors.StorageUnavailable` (503 with
``Retry-After``), never a raw client error; for a second after a failure, calls fail at once.
A settle is idempotent (a per-reservation marker kept 10 minutes), so a caller may retry one
whose reply was lost without counting it twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Literal, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from cloudlet.counters.base import (
    BudgetSeed,
    BudgetState,
    Limits,
    Reservation,
    budget_nanos,
    budget_refusal,
    period_window,
    rate_refusal,
)
from cloudlet.counters.clock import Clock, SystemClock
from cloudlet.errors import StorageUnavailable
from cloudlet.pricing import Money, to_nanos

log = logging.getLogger(__name__)
T = TypeVar("T")

_NEED_SEED = 2
_BUDGET_TTL_AFTER_S = 2 * 86_400
#: How long a settle's marker is kept: retries of a settle whose reply was lost come within
#: seconds of Redis answering again; one key per request, so not longer than needed.
_SETTLED_TTL_S = 600
#: Defaults for every connection (a URL's own ``socket_timeout=`` etc. win).
CLIENT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 1.0,
    "socket_timeout": 1.0,
    "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
}
#: The most one call waits for Redis, retries included.
CALL_TIMEOUT_S = 2.0
#: After a failed call, how long further calls fail at once (then one asks Redis again).
FAIL_FAST_S = 1.0
#: What a client is told to wait when the counters are down.
RETRY_AFTER_S = 2
#: How long a /ready answer about Redis is reused.
_PROBE_TTL_S = 1.0

# KEYS: rpm bucket, tpm bucket, budget hash
# ARGV: now, rpm (0: none), tpm (0: none), tokens, limit nanos (-1: none), nanos, seed nanos
#       (-1: not read yet), seconds until the period resets, budget TTL in seconds
# Returns {0} taken, {1, which, wait seconds, fits when settled} refused, {2} seed needed.
_RESERVE = """
local now, rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, limit, nanos = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if limit >= 0 and redis.call('EXISTS', KEYS[3]) == 0 then
  if tonumber(ARGV[7]) < 0 then return {2} end
  redis.call('HSET', KEYS[3], 'spent', ARGV[7], 'held', 0)
  redis.call('EXPIRE', KEYS[3], ARGV[9])
end
local which, wait, fits = '', 0, 0
local function bucket(key, n, cost)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = n
  if state[1] then
    tokens = math.min(n, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * n / 60)
  end
  local missing = cost - tokens
  if missing <= 1e-9 then return tokens - cost, 0 end
  return tokens - cost, missing * 60 / n
end
local rpm_left, tpm_left, over
if rpm > 0 then
  rpm_left, over = bucket(KEYS[1], rpm, 1)
  if over > wait then which, wait = 'rpm', over end
end
if tpm > 0 then
  tpm_left, over = bucket(KEYS[2], tpm, tokens)
  if over > wait then which, wait = 'tpm', over end
end
if limit >= 0 then
  local spent = tonumber(redis.call('HGET', KEYS[3], 'spent'))
  local held = tonumber(redis.call('HGET', KEYS[3], 'held'))
  if spent + held + nanos > limit then
    local budget_wait = tonumber(ARGV[8])
    if spent + nanos <= limit then budget_wait = 1 end
    if budget_wait > wait then
      which, wait = 'budget', budget_wait
      if spent + nanos <= limit then fits = 1 end
    end
  end
end
if which ~= '' then return {1, which, string.format('%.17g', wait), fits} end
local function keep(key, n, left)
  redis.call('HSET', key, 'tokens', string.format('%.17g', left), 'ts', ARGV[1])
  redis.call('PEXPIRE', key, math.ceil((n - left) * 60000 / n) + 1000)
end
if rpm > 0 then keep(KEYS[1], rpm, rpm_left) end
if tpm > 0 then keep(KEYS[2], tpm, tpm_left) end
if limit >= 0 then redis.call('HINCRBY', KEYS[3], 'held', ARGV[6]) end
return {0}
"""

# KEYS: tpm bucket, budget hash, the reservation's settled marker; ARGV: tpm (0: none), tokens
# to give back, -held nanos, spent nanos, 1 if the reservation held budget, now, marker TTL
_SETTLE = """
if redis.call('SET', KEYS[3], 1, 'NX', 'EX', ARGV[7]) == false then return 1 end
local tpm, refund, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[6])
if tpm > 0 and refund ~= 0 then
  local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  if state[1] then
    local tokens = tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * tpm / 60
    tokens = math.min(tpm, math.min(tpm, tokens) + refund)
    redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', ARGV[6])
    redis.call('PEXPIRE', KEYS[1], math.ceil((tpm - tokens) * 60000 / tpm) + 1000)
  end
end
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'held', ARGV[3])
  redis.call('HINCRBY', KEYS[2], 'spent', ARGV[4])
end
return 0
"""


class RedisCounters:
    """Counters in Redis; the caller owns nothing but this object (close it to disconnect)."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "cloudlet",
        clock: Clock | None = None,
        seed: BudgetSeed | None = None,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock or SystemClock()
        self._seed = seed
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._probe = Probe(client)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisCounters:
        """Connect lazily (the first command opens the pool)."""
        return cls(connect(url), **kwargs)

    async def ready(self) -> bool:
        """Whether Redis answers now (``/ready``); cached for a second."""
        return await self._probe.ready()

    def _key(self, key_id: str, suffix: str) -> str:
        return f"{self._prefix}:{{{key_id}}}:{suffix}"

    def _budget_key(self, key_id: str, period_kind: str, period: str) -> str:
        return self._key(key_id, f"budget:{period_kind}:{period}")

    async def reserve(
        self, key_id: str, limits: Limits, *, tokens: int, cost: Money
    ) -> Reservation:
        now = self._clock.now()
        period, start, end = period_window(limits.period, now)
        limit_nanos, nanos = budget_nanos(limits, cost) if limits.budget is not None else (-1, 0)
        keys = [
            self._key(key_id, "rpm"),
            self._key(key_id, "tpm"),
            self._budget_key(key_id, limits.period, period),
        ]
        reset_in = end.timestamp() - now
        args: list[str | int] = [
            repr(now),
            limits.rpm or 0,
            limits.tpm or 0,
            tokens,
            limit_nanos,
            nanos,
            -1,
            repr(reset_in),
            int(reset_in) + _BUDGET_TTL_AFTER_S,
        ]
        result = await self._probe.guard(lambda: self._reserve(keys=keys, args=args))
        if int(result[0]) == _NEED_SEED:
            assert limits.budget is not None
            spent = Decimal(0)
            if self._seed is not None:
                spent = await self._seed(key_id, start, limits.budget.currency)
            args[6] = to_nanos(spent)
            result = await self._probe.guard(lambda: self._reserve(keys=keys, args=args))
        if int(result[0]) != 0:
            which: Literal["rpm", "tpm", "budget"] = result[1]
            wait = float(result[2])
            if which == "budget":
                raise budget_refusal(limits, fits_when_settled=result[3] == 1, reset_in_s=reset_in)
            raise rate_refusal(which, limits, wait, tokens)
        return Reservation(
            key_id=key_id,
            tokens=tokens if limits.tpm is not None else 0,
            nanos=nanos,
            currency=cost.currency,
            tpm=limits.tpm,
            period=f"{limits.period}:{period}" if limits.budget is not None else None,
        )

    async def settle(self, reservation: Reservation, *, tokens: int, cost: Money) -> None:
        r = reservation
        if r.tpm is None and r.period is None:
            return
        budget_key = (
            self._key(r.key_id, f"budget:{r.period}")
            if r.period
            else self._key(r.key_id, "budget:none")
        )
        args: list[str | int] = [
            r.tpm or 0,
            r.tokens - tokens if r.tpm is not None else 0,
            -r.nanos,
            to_nanos(cost.amount),
            1 if r.period is not None else 0,
            repr(self._clock.now()),
            _SETTLED_TTL_S,
        ]
        keys = [self._key(r.key_id, "tpm"), budget_key, self._key(r.key_id, f"settled:{r.id}")]
        # Shielded: the caller may be cancelled (its client left), the budget must settle.
        await asyncio.shield(self._probe.guard(lambda: self._settle(keys=keys, args=args)))

    async def budget_state(self, key_id: str, limits: Limits) -> BudgetState | None:
        if limits.budget is None:
            return None
        now = self._clock.now()
        period, start, end = period_window(limits.period, now)
        budget_key = self._budget_key(key_id, limits.period, period)
        spent_s, held_s = await self._probe.guard(
            lambda: self._redis.hmget(budget_key, ["spent", "held"])
        )
        currency = limits.budget.currency
        if spent_s is None:
            seeded = await self._seed(key_id, start, currency) if self._seed else Decimal(0)
            spent, held = to_nanos(seeded), 0
        else:
            spent, held = int(spent_s), int(held_s or 0)
        return BudgetState(
            period=period,
            limit=limits.budget,
            spent=Money.from_nanos(spent, currency),
            held=Money.from_nanos(held, currency),
            resets_at=end,
        )

    async def close(self) -> None:
        await self._redis.aclose()


def connect(url: str) -> Redis:
    """A client for ``url`` with bounded waits (:data:`CLIENT_OPTIONS`); connects lazily."""
    return Redis.from_url(url, decode_responses=True, **CLIENT_OPTIONS)


class Probe:
    """Bounds every call to one Redis, turns its failures into
    :class:`~cloudlet.errors.StorageUnavailable`, logs an outage once when it starts and once
    when it ends, and answers ``/ready``.

    Once a call has failed, calls in the next :data:`FAIL_FAST_S` fail at once instead of each
    waiting out the timeout against a Redis that hangs; the readiness probe always asks.
    """

    def __init__(self, client: Redis, *, what: str = "counters") -> None:
        self._redis = client
        self._what = what
        self._down = False
        self._fail_until = 0.0  # monotonic: until then, calls fail without asking Redis
        self._probed: tuple[float, bool] | None = None  # (until, answer)

    async def guard(self, call: Callable[[], Awaitable[T]], *, probe: bool = False) -> T:
        """``await call()``, bounded by :data:`CALL_TIMEOUT_S`."""
        if self._down and not probe and time.monotonic() < self._fail_until:
            raise self._unavailable()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                result = await call()
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed(exc) from exc
        if self._down:
            self._down = False
            log.warning("%s: Redis answers again", self._what)
        return result

    async def ready(self) -> bool:
        now = time.monotonic()
        if self._probed is not None and self._probed[0] > now:
            return self._probed[1]
        try:
            await self.guard(self._redis.ping, probe=True)
            answer = True
        except StorageUnavailable:
            answer = False
        self._probed = (time.monotonic() + _PROBE_TTL_S, answer)
        return answer

    def _failed(self, exc: BaseException) -> StorageUnavailable:
        self._fail_until = time.monotonic() + FAIL_FAST_S
        if not self._down:
            self._down = True
            # The exception's type only: redis-py's messages may carry the host, never needed.
            log.error(
                "%s: Redis is unreachable (%s); requests that need it get 503 until it answers",
                self._what,
                type(exc).__name__,
            )
        return self._unavailable()

    def _unavailable(self) -> StorageUnavailable:
        return StorageUnavailable(
            "Rate limits and budgets cannot be checked right now (their store does not "
            "answer). Please retry shortly.",
            retry_after=RETRY_AFTER_S,
        )
