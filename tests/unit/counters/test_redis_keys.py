from __future__ import annotations

from decimal import Decimal

import pytest
from redis.asyncio import Redis

from cloudlet.counters import FakeClock, Limits, open_counters
from cloudlet.counters.memory import MemoryCounters
from cloudlet.counters.redis_backend import RedisCounters
from cloudlet.pricing import Money
from tests.unit.counters.backends import REDIS, delete_prefix, new_prefix


async def test_every_redis_key_expires_and_shares_one_hash_slot(clock: FakeClock) -> None:
    prefix = new_prefix()
    counters = open_counters(REDIS, clock=clock, prefix=prefix)
    assert isinstance(counters, RedisCounters)
    client = Redis.from_url(REDIS, decode_responses=True)
    try:
        limits = Limits(rpm=10, tpm=1000, budget=Money(Decimal(1)), period="day")
        await counters.reserve("key_1", limits, tokens=100, cost=Money(Decimal("0.1")))
        keys = sorted([k async for k in client.scan_iter(match=f"{prefix}:*")])
        assert keys == [
            f"{prefix}:{{key_1}}:budget:day:2025-06-15",
            f"{prefix}:{{key_1}}:rpm",
            f"{prefix}:{{key_1}}:tpm",
        ]
        for key in keys:
            assert 0 < await client.ttl(key) <= 12 * 3600 + 2 * 86400
        assert await client.ttl(f"{prefix}:{{key_1}}:rpm") <= 61
    finally:
        await counters.close()
        await client.aclose()
        await delete_prefix(prefix)


def test_open_counters_picks_the_backend() -> None:
    assert isinstance(open_counters("memory"), MemoryCounters)
    with pytest.raises(ValueError, match="memory"):
        open_counters("memcached://x")
