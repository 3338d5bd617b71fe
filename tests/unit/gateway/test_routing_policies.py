"""Each policy routes as specified; the budget gates spill; headers' facts (target, spilled)."""

from decimal import Decimal

import pytest

from cloudlet.domain import ModelId
from cloudlet.domain.tokens import prompt_token_bound
from cloudlet.errors import BudgetExhausted, UpstreamError
from cloudlet.gateway.pricing import Money
from tests.unit.gateway.scripted import (
    FakeClock,
    ScriptedEngine,
    ask,
    cloud,
    drain,
    gateway,
    local,
    remote,
)

LOCAL_FIRST = {
    "name": "chat",
    "targets": ["local", "cloud"],
    "policy": "local-first",
    "spill": {"max_queue_wait_ms": 2000},
}


async def test_local_first_stays_local_within_the_latency_objective() -> None:
    clock = FakeClock()
    engines = {"local": ScriptedEngine("local"), "cloud": ScriptedEngine("cloud")}
    gw = gateway(engines, [local("local"), cloud("cloud")], [LOCAL_FIRST], clock)
    await gw.start()
    engines["local"].wait_s = 2.0  # exactly at the objective: still local
    generation = await gw.generate(ask("chat"))
    assert (generation.target, generation.spilled) == ("local", False)
    assert await drain(generation.events) == "ab"
    assert engines["cloud"].calls == 0


async def test_local_first_spills_when_the_local_queue_would_miss_the_objective() -> None:
    clock = FakeClock()
    engines = {"local": ScriptedEngine("local"), "cloud": ScriptedEngine("cloud", ["c"])}
    gw = gateway(engines, [local("local"), cloud("cloud")], [LOCAL_FIRST], clock)
    await gw.start()
    engines["local"].wait_s = 2.5
    generation = await gw.generate(ask("chat"))
    assert (generation.target, generation.spilled) == ("cloud", True)
    assert await drain(generation.events) == "c"
    assert engines["local"].calls == 0


async def test_local_first_spills_when_local_is_down() -> None:
    clock = FakeClock()
    engines = {"local": ScriptedEngine("local"), "cloud": ScriptedEngine("cloud")}
    engines["local"].load_error = RuntimeError("no GPU")
    gw = gateway(engines, [local("local"), cloud("cloud")], [LOCAL_FIRST], clock)
    await gw.start()
    generation = await gw.generate(ask("chat"))
    assert (generation.target, generation.spilled) == ("cloud", True)
    assert gw.status()["chat"] == "ready"  # a route is up while any target is


#: What a spill of ask("chat") reserves at one dollar a token: the prompt's token bound (its
#: UTF-8 bytes plus the templates' overhead) and max_tokens (2); it costs 3 + 2 = 5.
RESERVE = prompt_token_bound(ask("chat")) + 2
#: Two spills fit (5 + RESERVE), a third does not (10 + RESERVE).
LIMIT = 5 + RESERVE + 3


def budgeted(when_spent: str) -> dict[str, object]:
    budget = {"per_day": str(LIMIT), "currency": "USD", "when_spent": when_spent}
    return {**LOCAL_FIRST, "cloud_budget": budget}


async def spend_the_budget(when_spent: str) -> tuple[object, dict[str, ScriptedEngine]]:
    """At one dollar a token: each spill reserves RESERVE, costs 5."""
    clock = FakeClock()
    engines = {"local": ScriptedEngine("local"), "cloud": ScriptedEngine("cloud")}
    gw = gateway(engines, [local("local"), cloud("cloud")], [budgeted(when_spent)], clock)
    await gw.start()
    engines["local"].wait_s = 30.0
    for _ in range(2):
        generation = await gw.generate(ask("chat"))
        assert (generation.target, generation.spilled) == ("cloud", True)
        await drain(generation.events)
    assert await gw.budget_spent("chat") == Money(Decimal(10), "USD")
    return gw, engines


async def test_a_spent_budget_stops_spill_and_queues_locally() -> None:
    gw, engines = await spend_the_budget("queue")
    generation = await gw.generate(ask("chat"))  # 10 + RESERVE > LIMIT: no more cloud
    assert (generation.target, generation.spilled) == ("local", False)
    await drain(generation.events)
    assert engines["cloud"].calls == 2
    assert await gw.budget_spent("chat") == Money(Decimal(10), "USD")


async def test_a_spent_budget_can_refuse_with_429_instead() -> None:
    gw, engines = await spend_the_budget("reject")
    with pytest.raises(BudgetExhausted) as exc:
        await gw.generate(ask("chat"))
    assert exc.value.status == 429 and exc.value.retry_after == 31  # the local queue's wait
    assert "cloud budget" in exc.value.message
    assert engines["cloud"].calls == 2 and engines["local"].calls == 0


async def test_a_failed_cloud_call_releases_its_reservation() -> None:
    clock = FakeClock()
    engines = {"local": ScriptedEngine("local"), "cloud": ScriptedEngine("cloud")}
    gw = gateway(engines, [local("local"), cloud("cloud")], [budgeted("queue")], clock)
    await gw.start()
    engines["local"].wait_s = 30.0
    engines["cloud"].script = [UpstreamError("500")]
    generation = await gw.generate(ask("chat"))
    assert generation.target == "local"  # the busy local queue is the last resort
    await drain(generation.events)
    assert await gw.budget_spent("chat") == Money(Decimal(0), "USD")


async def test_a_client_that_leaves_mid_stream_is_charged_what_it_got() -> None:
    clock = FakeClock()
    engines = {"local": ScriptedEngine("local"), "cloud": ScriptedEngine("cloud", ["x"] * 5)}
    gw = gateway(engines, [local("local"), cloud("cloud")], [budgeted("queue")], clock)
    await gw.start()
    engines["local"].wait_s = 30.0
    events = (await gw.generate(ask("chat", max_tokens=5))).events
    await anext(events)
    await events.aclose()
    # reserved the bound + 5; charged the prompt's bound (its usage never came) and the 1
    # token sent: never less than the upstream may bill for the prompt
    assert await gw.budget_spent("chat") == Money(Decimal(RESERVE - 2 + 1), "USD")


async def test_fallback_tries_the_next_target_on_error_before_the_first_token() -> None:
    clock = FakeClock()
    engines = {"a": ScriptedEngine("a", ["A"]), "b": ScriptedEngine("b", ["B"])}
    route = {"name": "r", "targets": ["a", "b"], "policy": "fallback"}
    gw = gateway(engines, [remote("a"), remote("b")], [route], clock)
    await gw.start()
    engines["a"].script = [UpstreamError("HTTP 500")]
    generation = await gw.generate(ask("r"))
    assert (generation.target, generation.spilled) == ("b", True)
    assert await drain(generation.events) == "B"
    assert len(clock.slept) == 1 and 0 <= clock.slept[0] <= 0.020  # one jittered backoff
    generation = await gw.generate(ask("r"))
    assert (generation.target, generation.spilled) == ("a", False)


async def test_weighted_sends_shares_by_weight() -> None:
    clock = FakeClock()
    engines = {"a": ScriptedEngine("a"), "b": ScriptedEngine("b")}
    route = {
        "name": "r",
        "targets": [{"model": "a", "weight": 3}, {"model": "b", "weight": 1}],
        "policy": "weighted",
    }
    gw = gateway(engines, [remote("a"), remote("b")], [route], clock)
    await gw.start()
    for _ in range(400):
        await drain((await gw.generate(ask("r"))).events)
    assert 260 <= engines["a"].calls <= 340  # 300 expected; the seed fixes the draw


async def test_cheapest_prefers_the_lower_price_and_falls_back_to_the_other() -> None:
    clock = FakeClock()
    engines = {"dear": ScriptedEngine("dear"), "cheap": ScriptedEngine("cheap")}
    models = [cloud("dear", per_mtok=3), cloud("cheap", per_mtok=1)]
    route = {"name": "r", "targets": ["dear", "cheap"], "policy": "cheapest"}
    gw = gateway(engines, models, [route], clock)
    await gw.start()
    assert (await gw.generate(ask("r"))).target == "cheap"
    engines["cheap"].script = [UpstreamError("down")]
    generation = await gw.generate(ask("r"))
    assert (generation.target, generation.spilled) == ("dear", True)


async def test_fastest_follows_the_observed_time_to_first_token() -> None:
    clock = FakeClock()
    engines = {
        "slow": ScriptedEngine("slow", clock=clock, ttft_s=0.5),
        "quick": ScriptedEngine("quick", clock=clock, ttft_s=0.1),
    }
    route = {"name": "r", "targets": ["slow", "quick"], "policy": "fastest"}
    gw = gateway(engines, [remote("slow"), remote("quick")], [route], clock)
    await gw.start()
    seen = [(await gw.generate(ask("r"))).target for _ in range(4)]
    assert seen == ["slow", "quick", "quick", "quick"]  # unobserved targets are tried first


async def test_routes_are_listed_as_models() -> None:
    clock = FakeClock()
    engines = {"local": ScriptedEngine("local"), "cloud": ScriptedEngine("cloud")}
    gw = gateway(engines, [local("local"), cloud("cloud")], [LOCAL_FIRST], clock)
    assert [m.id for m in gw.models()] == ["local", "cloud", "chat"]
    assert gw.model("chat").engine == "route"
    assert gw.status()["chat"] == "loading"
    await gw.start()
    assert gw.status() == {"local": "ready", "cloud": "ready", "chat": "ready"}
    assert (gw.is_route("chat"), gw.is_route("local")) == (True, False)
    assert gw.targets_of("chat") == ["local", "cloud"] and gw.targets_of("cloud") == ["cloud"]
    assert gw.max_tokens_default("chat") == 512


async def test_embeddings_route_and_fail_over_too() -> None:
    clock = FakeClock()
    engines = {
        "e1": ScriptedEngine("e1", kind="embedding"),
        "e2": ScriptedEngine("e2", kind="embedding"),
    }
    models = [remote("e1", kind="embedding"), remote("e2", kind="embedding")]
    route = {"name": "emb", "targets": ["e1", "e2"]}
    gw = gateway(engines, models, [route], clock)
    await gw.start()
    engines["e1"].script = [UpstreamError("down")]
    embedding = await gw.embed(ModelId("emb"), ["abc"])
    assert (embedding.target, embedding.spilled) == ("e2", True)
    assert embedding.result.vectors == [[3.0]]


async def test_local_first_means_local_wherever_the_cloud_is_listed() -> None:
    clock = FakeClock()
    engines = {"local": ScriptedEngine("local"), "cloud": ScriptedEngine("cloud")}
    route = {**LOCAL_FIRST, "targets": ["cloud", "local"]}
    gw = gateway(engines, [local("local"), cloud("cloud")], [route], clock)
    await gw.start()
    generation = await gw.generate(ask("chat"))
    assert (generation.target, generation.spilled) == ("local", False)
    engines["local"].wait_s = 9.0
    generation = await gw.generate(ask("chat"))
    assert (generation.target, generation.spilled) == ("cloud", True)


async def test_a_route_counts_its_calls_and_a_call_by_the_models_name_counts_in_every_budget() -> (
    None
):
    clock = FakeClock()
    engines = {"local": ScriptedEngine("local"), "cloud": ScriptedEngine("cloud")}
    budget = {"per_day": str(LIMIT), "currency": "USD", "when_spent": "reject"}
    routes = [
        {"name": name, "targets": ["cloud", "local"], "policy": "fallback", "cloud_budget": budget}
        for name in ("a", "b")
    ]
    gw = gateway(engines, [local("local"), cloud("cloud")], routes, clock)
    await gw.start()
    await drain((await gw.generate(ask("a"))).events)  # costs 5, charged to a only
    assert (await gw.budget_spent("a"), await gw.budget_spent("b")) == (usd(5), usd(0))
    await drain((await gw.generate(ask("cloud"))).events)  # by name: to every budget
    assert (await gw.budget_spent("a"), await gw.budget_spent("b")) == (usd(10), usd(5))
    with pytest.raises(BudgetExhausted):  # a is spent: naming the model does not get around it
        await gw.generate(ask("cloud"))
    generation = await gw.generate(ask("b"))  # b still has room for its own calls
    assert generation.target == "cloud"
    await drain(generation.events)


def usd(amount: int) -> Money:
    return Money(Decimal(amount), "USD")
