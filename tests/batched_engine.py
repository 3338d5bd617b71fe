"""Shared by the tests that drive the batching llama.cpp engine in-process (test_batching,
test_choices): start one for a module, and wait until it has nothing running or waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from cloudlet.config import ModelSpec
from cloudlet.engines.llamacpp_batched import BatchedLlamaCppEngine


async def started(spec: ModelSpec) -> AsyncIterator[BatchedLlamaCppEngine]:
    """The engine of ``spec``, started, and closed after the yield (a fixture's body)."""
    engine = BatchedLlamaCppEngine(spec)
    await engine.start()
    yield engine
    await engine.close()


async def drained(engine: BatchedLlamaCppEngine) -> None:
    """Wait (bounded) until no request runs or waits."""
    for _ in range(600):
        stats = engine.stats()
        if stats.running == 0 and stats.queue_depth == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the engine did not drain: {engine.stats()}")
