"""Every request of a known tenant ends in exactly one record, made in one place, whatever
way it ends; sinks receive it, and a sink that raises cannot lose the others' records."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from cloudlet.config import Spec
from cloudlet.counters.memory import MemoryCounters
from cloudlet.domain import ChatMessage, GenerationRequest
from cloudlet.errors import BudgetExhausted, CloudletError, EngineUnavailable, ModelNotFound
from cloudlet.gateway import Gateway
from cloudlet.gateway.catalog import Catalog
from cloudlet.gateway.life import Arrival, Recorder, client_request_id
from cloudlet.gateway.pipeline import Pipeline
from cloudlet.gateway.prices import Prices
from cloudlet.gateway.record import RequestRecord, Sinks
from tests.fakes import FakeChatEngine
from tests.unit.gateway.test_accounting import World, _world

ROUTE_SPEC = """
models:
  - name: local
    engine: openai
    url: http://127.0.0.1:9/v1
    price: {input_per_mtok: 1000, output_per_mtok: 2000}
  - name: cloud
    engine: openai
    url: http://127.0.0.1:9/v1
    cloud: true
    price: {input_per_mtok: 3000, output_per_mtok: 6000}
routes:
  - name: chat
    targets: [{model: local}, {model: cloud}]
"""


class Collect:
    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def record(self, record: RequestRecord) -> None:
        self.records.append(record)


class Broken:
    def record(self, record: RequestRecord) -> None:
        raise RuntimeError("this sink is broken")


def ask(model: str, max_tokens: int = 8) -> GenerationRequest:
    return GenerationRequest(
        model=model, messages=(ChatMessage(role="user", content="Say hi"),), max_tokens=max_tokens
    )


async def route_pipeline(local: FakeChatEngine, cloud: FakeChatEngine) -> tuple[Pipeline, Collect]:
    spec = Spec.model_validate(yaml.safe_load(ROUTE_SPEC))
    gateway = Gateway({"local": local, "cloud": cloud}, spec)
    await gateway.start()
    seen = Collect()
    recorder = Recorder(Prices(spec.models, gateway.stats), sinks=Sinks([Broken(), seen]))
    return Pipeline(gateway, Catalog.from_spec(spec), recorder=recorder), seen


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[World, Collect]]:
    made = await _world(tmp_path, FakeChatEngine("fake"), MemoryCounters())
    seen = Collect()
    made.pipeline.recorder.sinks.add(seen)
    yield made, seen
    await made.ledger.close()


async def test_a_stream_ends_in_one_record_equal_to_its_ledger_row(
    world: tuple[World, Collect],
) -> None:
    made, seen = world
    arrival = Arrival.now("client-id-1")
    generation = await made.pipeline.generate(made.key, ask("fake"), arrival, stream=True)
    events = [event async for event in generation.events]
    await generation.events.aclose()  # a second end changes nothing
    assert len(events) == 4
    [record] = seen.records
    assert record.request_id == arrival.request_id
    assert record.client_request_id == "client-id-1"
    assert (record.status, record.error, record.http_status) == ("ok", None, 200)
    assert (record.model, record.target, record.provider) == ("fake", "fake", "fake")
    assert (record.prompt_tokens, record.completion_tokens) == (2, 3)
    assert record.ttft_s is not None and 0 <= record.ttft_s <= record.duration_s
    assert record.finish_reason == "stop" and record.stream
    assert [a.error for a in record.attempts] == [None]
    assert record.team == "research" and record.key_id == made.key_id
    [row] = await made.rows()
    assert row["request_id"] == record.request_id
    assert row["client_request_id"] == "client-id-1"
    assert row["cost_nanos"] == record.cost.nanos > 0
    assert (row["prompt_tokens"], row["completion_tokens"], row["status"]) == (2, 3, "ok")
    assert await made.ledger.request_rows("client-id-1") == await made.ledger.request_rows(
        record.request_id
    )


async def test_a_refusal_is_one_record_of_cost_zero(world: tuple[World, Collect]) -> None:
    made, seen = world
    with pytest.raises(ModelNotFound):
        await made.pipeline.generate(made.key, ask("nope"))
    [record] = seen.records
    assert (record.status, record.error, record.http_status) == ("refused", "model_not_found", 404)
    assert record.cost.amount == 0 and record.target is None and record.attempts == ()
    [row] = await made.rows()
    assert (row["status"], row["request_id"]) == ("refused", record.request_id)


async def test_a_401_names_no_tenant_and_ends_in_no_record(world: tuple[World, Collect]) -> None:
    made, seen = world
    with pytest.raises(CloudletError):
        await made.pipeline.generate("sk-cl-wrong", ask("fake"))
    assert seen.records == [] and await made.rows() == []


async def test_a_stream_that_breaks_is_an_error_charged_for_what_was_sent(
    world: tuple[World, Collect],
) -> None:
    made, seen = world
    made.engine.fail_after = 2
    generation = await made.pipeline.generate(made.key, ask("fake"), stream=True)
    with pytest.raises(RuntimeError):
        _ = [event async for event in generation.events]
    [record] = seen.records
    assert (record.status, record.error, record.http_status) == ("error", "RuntimeError", 200)
    assert record.completion_tokens == 2  # a token per piece sent
    assert record.prompt_tokens > 0  # the prompt's bound: no usage arrived
    [row] = await made.rows()
    assert (row["status"], row["completion_tokens"]) == ("error", 2)


async def test_a_client_that_leaves_is_cancelled_once(world: tuple[World, Collect]) -> None:
    made, seen = world
    generation = await made.pipeline.generate(made.key, ask("fake"))
    made.engine.gate = asyncio.Event()  # the next word waits (the first is in hand)
    await anext(generation.events)
    reader = asyncio.create_task(anext(generation.events))
    await asyncio.sleep(0.05)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await generation.events.aclose()
    [record] = seen.records
    assert record.status == "cancelled"
    [row] = await made.rows()
    assert row["status"] == "cancelled"


async def test_a_failover_records_both_attempts_and_a_broken_sink_loses_nothing() -> None:
    down = FakeChatEngine("local", fail_before=EngineUnavailable("local is down"))
    pipeline, seen = await route_pipeline(down, FakeChatEngine("cloud"))
    generation = await pipeline.generate(None, ask("chat"))
    _ = [event async for event in generation.events]
    [record] = seen.records  # the broken sink before it did not stop it
    assert (record.model, record.route, record.target) == ("chat", "chat", "cloud")
    assert record.spilled and record.cloud
    assert [(a.target, a.error) for a in record.attempts] == [
        ("local", "engine_unavailable"),
        ("cloud", None),
    ]
    assert record.cost.amount > 0 and record.cost == record.cloud_equivalent


async def test_a_failure_before_any_stream_is_one_error_record() -> None:
    down = FakeChatEngine("local", fail_before=EngineUnavailable("down"))
    also = FakeChatEngine("cloud", fail_before=EngineUnavailable("down too"))
    pipeline, seen = await route_pipeline(down, also)
    with pytest.raises(EngineUnavailable):
        await pipeline.generate(None, ask("chat"))
    [record] = seen.records
    assert (record.status, record.error, record.http_status) == (
        "error",
        "engine_unavailable",
        503,
    )
    assert record.target is None and record.cost.amount == 0
    assert len(record.attempts) >= 2 and all(a.error for a in record.attempts)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123", "abc-123"),
        ("4bf92f3577b34da6a3ce929d0e0e4736", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("", None),
        ("has space", None),
        ("x" * 65, None),
        ("<script>", None),
        (None, None),
    ],
)
def test_only_a_well_formed_client_request_id_is_kept(sent: str | None, kept: str | None) -> None:
    assert client_request_id(sent) == kept


def test_an_error_before_any_upstream_was_tried_is_a_refusal() -> None:
    recorder = Recorder(Prices([], dict))
    spent = BudgetExhausted("The cloud budget of route 'chat' is spent", retry_after=60)
    turned_away = recorder.begin(Arrival.now(), "chat", "chat").close_with(spent)
    assert (turned_away.status, turned_away.error, turned_away.http_status) == (
        "refused",
        "cloud_budget_exhausted",
        429,
    )
    life = recorder.begin(Arrival.now(), "chat", "chat")
    life.attempt("cloud", "openai").end("upstream_error")
    failed = life.close_with(EngineUnavailable("every target failed"))
    assert (failed.status, failed.http_status) == ("error", 503)
