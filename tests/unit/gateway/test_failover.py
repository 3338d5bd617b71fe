"""Failover before the first token, errors after it, circuit breakers, replicas, health checks."""

import pytest

from cloudlet.errors import (
    EngineOverloaded,
    EngineUnavailable,
    InvalidRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from cloudlet.gateway.targets import Target, TargetOptions
from tests.unit.gateway.scripted import (
    FakeClock,
    Replicas,
    ScriptedEngine,
    ask,
    drain,
    gateway,
    remote,
)

FALLBACK = {"name": "r", "targets": ["a", "b", "c"], "policy": "fallback"}


def three(clock: FakeClock, **route: object) -> tuple[object, dict[str, ScriptedEngine]]:
    engines = {n: ScriptedEngine(n, [n.upper()]) for n in "abc"}
    gw = gateway(engines, [remote(n) for n in "abc"], [{**FALLBACK, **route}], clock)
    return gw, engines


@pytest.mark.parametrize(
    "error",
    [
        UpstreamError("HTTP 500"),
        UpstreamError("connection refused"),
        UpstreamTimeout("no first token"),
        UpstreamRateLimited("429", retry_after=3),
        EngineOverloaded("queue full"),
        EngineUnavailable("not loaded"),
    ],
)
async def test_failures_before_the_first_token_are_invisible(error: Exception) -> None:
    clock = FakeClock()
    gw, engines = three(clock)
    await gw.start()
    engines["a"].script = [error]
    generation = await gw.generate(ask("r"))
    assert await drain(generation.events) == "B"
    assert generation.target == "b"


async def test_the_clients_own_errors_are_not_retried() -> None:
    clock = FakeClock()
    gw, engines = three(clock)
    await gw.start()
    engines["a"].script = [InvalidRequest("prompt too long")]
    with pytest.raises(InvalidRequest):
        await gw.generate(ask("r"))
    assert engines["b"].calls == 0


async def test_attempts_are_bounded_and_back_off_with_jitter() -> None:
    clock = FakeClock()
    retry = {"max_attempts": 2, "backoff_ms": 100, "max_backoff_ms": 150}
    gw, engines = three(clock, retry=retry)
    await gw.start()
    engines["a"].script = [UpstreamError("a down")]
    engines["b"].script = [UpstreamError("b down")]
    with pytest.raises(UpstreamError, match="b down"):
        await gw.generate(ask("r"))
    assert engines["c"].calls == 0
    assert len(clock.slept) == 1 and 0 <= clock.slept[0] <= 0.1


async def test_a_failure_after_the_first_token_ends_the_stream() -> None:
    clock = FakeClock()
    engines = {"a": ScriptedEngine("a", ["x", "y", "z"]), "b": ScriptedEngine("b")}
    route = {"name": "r", "targets": ["a", "b"]}
    gw = gateway(engines, [remote("a", breaker={"failures": 1}), remote("b")], [route], clock)
    await gw.start()
    engines["a"].script = [1]  # one word, then the upstream breaks off
    events = (await gw.generate(ask("r"))).events
    assert (await anext(events)).text == "x"  # type: ignore[union-attr]
    with pytest.raises(UpstreamError, match="broke off"):
        await anext(events)
    assert engines["b"].calls == 0  # no failover once text has reached the client
    assert (await gw.generate(ask("r"))).target == "b"  # and the breaker counted it


async def test_the_circuit_opens_and_closes() -> None:
    clock = FakeClock()
    engines = {"m": ScriptedEngine("m")}
    gw = gateway(engines, [remote("m", breaker={"failures": 2, "cooldown_s": 30})], [], clock)
    await gw.start()
    engines["m"].script = [UpstreamError("down"), UpstreamError("down")]
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await gw.generate(ask("m"))
    with pytest.raises(EngineUnavailable, match="circuit open"):
        await gw.generate(ask("m"))
    assert engines["m"].calls == 2  # open: the upstream is not even asked
    clock.now += 30
    generation = await gw.generate(ask("m"))  # half-open: one trial, which succeeds
    await drain(generation.events)
    assert engines["m"].calls == 3
    await drain((await gw.generate(ask("m"))).events)  # closed again
    assert engines["m"].calls == 4


async def test_rate_limits_and_full_queues_do_not_open_the_circuit() -> None:
    clock = FakeClock()
    engines = {"m": ScriptedEngine("m")}
    gw = gateway(engines, [remote("m", breaker={"failures": 1})], [], clock)
    await gw.start()
    engines["m"].script = [UpstreamRateLimited("429", retry_after=2), EngineOverloaded("full")]
    with pytest.raises(UpstreamRateLimited):
        await gw.generate(ask("m"))
    with pytest.raises(EngineOverloaded):
        await gw.generate(ask("m"))
    await drain((await gw.generate(ask("m"))).events)


async def test_replicas_balance_by_outstanding_requests_and_fail_over() -> None:
    clock = FakeClock()
    r0, r1 = ScriptedEngine("m"), ScriptedEngine("m")
    engines = {"m": Replicas("m", [r0, r1])}
    gw = gateway(engines, [remote("m")], [], clock)  # type: ignore[arg-type]
    await gw.start()
    held = (await gw.generate(ask("m"))).events  # r0 is busy while this stays open
    assert r0.calls == 1
    await drain((await gw.generate(ask("m"))).events)
    assert r1.calls == 1
    await held.aclose()
    r0.script = [UpstreamError("replica down")]
    generation = await gw.generate(ask("m"))
    assert (generation.target, generation.spilled) == ("m", False)  # same model: not a spill
    await drain(generation.events)
    assert (r0.calls, r1.calls) == (2, 2)


async def test_prefix_affinity_keeps_a_prompt_on_one_replica() -> None:
    clock = FakeClock()
    replicas = [ScriptedEngine("m") for _ in range(3)]
    engines = {"m": Replicas("m", replicas)}
    gw = gateway(engines, [remote("m", balance="prefix-affinity")], [], clock)  # type: ignore[arg-type]
    await gw.start()
    for _ in range(5):
        await drain((await gw.generate(ask("m", "the same long system prompt"))).events)
    assert sorted(r.calls for r in replicas) == [0, 0, 5]


async def test_health_checks_take_a_dead_replica_out_and_put_it_back() -> None:
    clock = FakeClock()
    r0, r1 = ScriptedEngine("m"), ScriptedEngine("m")
    engines = {"m": Replicas("m", [r0, r1])}
    spec = remote("m", health_check={"interval_s": 10, "unhealthy_after": 2})
    gw = gateway(engines, [spec], [], clock)  # type: ignore[arg-type]
    await gw.start()
    r0.healthy = False
    await gw.check_health()
    await drain((await gw.generate(ask("m"))).events)
    assert r0.calls == 1  # one failed check is not enough
    await gw.check_health()
    for _ in range(3):
        await drain((await gw.generate(ask("m"))).events)
    assert (r0.calls, r1.calls) == (1, 3)
    r0.healthy = True
    await gw.check_health()
    held = (await gw.generate(ask("m"))).events
    assert r0.calls == 2
    await held.aclose()
    await gw.close()


def test_a_single_engine_is_its_own_replica() -> None:
    target = Target("x", ScriptedEngine("x"), TargetOptions(), FakeClock())
    assert len(target.replicas) == 1 and not target.available()  # not loaded yet
