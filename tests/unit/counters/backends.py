"""Counters backends for tests: memory, or the real Redis at 127.0.0.1:6379 under a random
key prefix (never FLUSHDB: other things may use the database). Override the server with
CLOUDLET_TEST_REDIS."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from cloudlet.counters import BudgetSeed, Clock, Counters, MemoryCounters
from cloudlet.counters.redis_backend import RedisCounters

REDIS = os.environ.get("CLOUDLET_TEST_REDIS", "redis://127.0.0.1:6379/0")
BACKENDS = ("memory", "redis")


def new_prefix() -> str:
    return "cloudlet-test-" + secrets.token_hex(6)


async def delete_prefix(prefix: str) -> None:
    client = Redis.from_url(REDIS)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def open_backend(
    backend: str, clock: Clock, seed: BudgetSeed | None = None, prefix: str | None = None
) -> AsyncIterator[Counters]:
    if backend == "memory":
        counters: Counters = MemoryCounters(clock=clock, seed=seed)
        try:
            yield counters
        finally:
            await counters.close()
        return
    prefix = prefix or new_prefix()
    counters = RedisCounters.from_url(REDIS, prefix=prefix, clock=clock, seed=seed)
    try:
        yield counters
    finally:
        await counters.close()
        await delete_prefix(prefix)
