"""Targets whose replicas come and go (engine pods), and requests for a model scaled to zero."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from cloudlet.errors import EngineUnavailable
from cloudlet.gateway.balancer import PrefixAffinity
from tests.unit.gateway.scripted import (
    FakeClock,
    ScriptedEngine,
    ask,
    cloud,
    drain,
    gateway,
    local,
)


class Pods(ScriptedEngine):
    """A dynamic engine: pods appear when the test says so; ``wake`` records its calls."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._pods: list[ScriptedEngine] = []
        self.version = 0
        self.wakes: list[bool] = []
        self.arrived = asyncio.Event()
        self.on_wake: list[ScriptedEngine] | None = None  # pods that arrive when woken to wait

    @property
    def replicas(self) -> Sequence[ScriptedEngine]:
        return self._pods

    @property
    def replicas_version(self) -> int:
        return self.version

    def set_pods(self, pods: list[ScriptedEngine]) -> None:
        self._pods = pods
        self.version += 1

    async def wake(self, *, wait: bool) -> bool:
        self.wakes.append(wait)
        if wait and self.on_wake is not None:
            self.set_pods(self.on_wake)
        return bool(self._pods)


async def test_a_model_at_zero_is_woken_and_the_request_waits_for_its_pod() -> None:
    clock = FakeClock()
    pods = Pods("m")
    pods.on_wake = [ScriptedEngine("pod-1", ["from", "pod"])]
    gw = gateway({"m": pods}, [local("m")], [], clock)  # type: ignore[dict-item]
    await gw.start()
    result = await gw.generate(ask("m"))
    assert await drain(result.events) == "frompod"
    assert pods.wakes == [False, True]  # asked to scale at once, then waited: nothing else
    assert result.target == "m" and not result.spilled


async def test_no_pod_in_time_is_unavailable_with_retry_after() -> None:
    clock = FakeClock()
    pods = Pods("m")
    gw = gateway({"m": pods}, [local("m")], [], clock)  # type: ignore[dict-item]
    await gw.start()
    with pytest.raises(EngineUnavailable, match="scaling up from zero") as caught:
        await gw.generate(ask("m"))
    assert caught.value.retry_after is not None and caught.value.retry_after > 0


async def test_the_cloud_takes_the_request_while_the_local_model_scales_up() -> None:
    clock = FakeClock()
    pods = Pods("local")
    pods.on_wake = [ScriptedEngine("pod-1")]
    engines = {"local": pods, "cloud": ScriptedEngine("cloud", ["CLOUD"])}
    route = {"name": "r", "targets": ["local", "cloud"], "policy": "local-first"}
    gw = gateway(engines, [local("local"), cloud("cloud")], [route], clock)  # type: ignore[arg-type]
    await gw.start()
    result = await gw.generate(ask("r"))
    assert await drain(result.events) == "CLOUD"
    assert result.target == "cloud" and result.spilled
    assert pods.wakes == [False]  # the scale-up was asked for; nobody waited on it


async def test_new_pods_are_picked_up_and_known_ones_keep_their_state() -> None:
    clock = FakeClock()
    pods = Pods("m")
    a, b = ScriptedEngine("a", ["A"]), ScriptedEngine("b", ["B"])
    pods.set_pods([a])
    gw = gateway({"m": pods}, [local("m")], [], clock)  # type: ignore[dict-item]
    await gw.start()
    held = await gw.generate(ask("m"))  # a stream in flight on pod a
    pods.set_pods([a, b])
    second = await gw.generate(ask("m"))
    assert await drain(second.events) == "B"  # least outstanding: a still has one in flight
    assert await drain(held.events) == "A"
    pods.set_pods([b])
    assert await drain((await gw.generate(ask("m"))).events) == "B"
    assert pods.wakes == []


def test_a_keyed_ring_moves_only_the_prefixes_of_a_pod_that_left() -> None:
    keys = [f"http://10.0.0.{i}:8080/v1" for i in range(4)]
    before = PrefixAffinity(keys)
    after = PrefixAffinity(keys[:3])
    prompts = [f"system prompt number {i}" for i in range(200)]
    moved = 0
    for prompt in prompts:
        owner = before.order(prompt, [0] * 4)[0]
        if owner == 3:
            continue  # its pod left: these must move
        moved += after.order(prompt, [0] * 3)[0] != owner
    assert moved == 0
