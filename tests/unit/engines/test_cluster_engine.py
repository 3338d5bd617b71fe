"""The in-cluster engine on its own: pods come and go, and a model at zero is woken once."""

from __future__ import annotations

import asyncio

from cloudlet.config import ModelSpec
from cloudlet.engines.cluster import ClusterEngine

SPEC = ModelSpec(name="m", source="file:///models/x.gguf", parallel=2)
A, B = "http://10.0.0.1:8080/v1", "http://10.0.0.2:8080/v1"


async def test_the_pod_set_follows_set_urls_and_known_pods_are_kept() -> None:
    engine = ClusterEngine(SPEC)
    await engine.start()
    try:
        assert engine.replicas == [] and engine.replicas_version == 0
        engine.set_urls([A])
        first = engine.replicas[0]
        assert first.session is not None  # started: the new pod gets connections
        engine.set_urls([A, B])
        assert engine.replicas[0] is first and engine.replicas_version == 2
        engine.set_urls([B, A][::-1])  # the same set: nothing changes
        assert engine.replicas_version == 2
        engine.set_urls([B])
        assert [p.url for p in engine.replicas] == [B]
        assert engine.stats().capacity == 2  # one pod of two slots
    finally:
        await engine.close()


async def test_waiters_share_one_scale_up_and_are_counted_as_the_queue() -> None:
    engine = ClusterEngine(SPEC, wake_timeout_s=30)
    calls: list[int] = []

    async def scale_up() -> None:
        calls.append(1)

    engine.scale_up = scale_up
    await engine.start()
    try:
        waiters = [asyncio.create_task(engine.wake(wait=True)) for _ in range(2)]
        await asyncio.sleep(0)  # both run up to their wait
        assert engine.stats().queue_depth == 2
        engine.set_urls([A])
        assert await asyncio.gather(*waiters) == [True, True]
        assert calls == [1]
        assert engine.stats().queue_depth == 0
        assert await engine.wake(wait=False)  # a pod is there: nothing to ask for
        assert calls == [1]
    finally:
        await engine.close()


async def test_a_wake_that_times_out_says_so_and_a_failed_scale_up_is_only_logged() -> None:
    engine = ClusterEngine(SPEC, wake_timeout_s=0.05)

    async def broken() -> None:
        raise RuntimeError("forbidden")

    engine.scale_up = broken
    await engine.start()
    try:
        assert not await engine.wake(wait=True)
        assert engine.stats().queue_depth == 0
    finally:
        await engine.close()
