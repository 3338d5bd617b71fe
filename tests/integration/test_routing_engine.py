"""The remote engine on its own, against the fake upstream on loopback (no server process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from cloudlet.config import ModelSpec
from cloudlet.domain import ChatMessage, Finished, GenerationRequest, ModelId, TextDelta
from cloudlet.domain.tokens import prompt_token_bound
from cloudlet.engines.openai_remote import OpenAIEngine
from cloudlet.engines.propagation import trace_headers
from cloudlet.errors import (
    ContextLengthExceeded,
    EngineOverloaded,
    EngineUnavailable,
    InvalidRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from tests.fakes_upstream import Dead, Drop, FakeUpstream, Hold, NoUsage, Slow, Status

ASK = GenerationRequest(model=ModelId("m"), messages=(ChatMessage("user", "hello there"),))


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream().start()
    yield up
    up.stop()


def spec(up: FakeUpstream, **extra: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {"name": "m", "engine": "openai", "url": up.url, "upstream_model": "up", **extra}
    )


@pytest.fixture
async def engine(upstream: FakeUpstream) -> AsyncIterator[OpenAIEngine]:
    e = OpenAIEngine(spec(upstream, timeouts={"first_token_s": 0.5}))
    await e.start()
    yield e
    await e.close()


async def test_a_stream_passes_through_with_the_upstreams_usage(engine: OpenAIEngine) -> None:
    events = [e async for e in await engine.generate(ASK)]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello", " from", " upstream"]
    last = events[-1]
    assert isinstance(last, Finished) and last.reason == "stop"
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (11, 3)
    assert last.queued_s is not None and last.queued_s >= 0  # the wait for a free slot: none


async def test_usage_is_counted_here_when_the_upstream_sends_none(
    engine: OpenAIEngine, upstream: FakeUpstream
) -> None:
    upstream.fail_next(NoUsage())
    events = [e async for e in await engine.generate(ASK)]
    usage = events[-1].usage  # type: ignore[union-attr]
    # No usage: the prompt is charged at the bound its reservation held (any tokenizer fits it).
    assert usage.completion_tokens == 3 and usage.prompt_tokens == prompt_token_bound(ASK)


async def test_max_tokens_defaults_to_the_specs_so_the_cost_is_bounded(
    engine: OpenAIEngine, upstream: FakeUpstream
) -> None:
    [e async for e in await engine.generate(ASK)]
    assert upstream.calls()[-1].body["max_tokens"] == 512


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Status(500), UpstreamError),
        (Status(429, retry_after=9), UpstreamRateLimited),
        (Status(401), UpstreamError),
        (Status(400), InvalidRequest),
        (Dead(), UpstreamError),
        (Slow(2.0), UpstreamTimeout),
    ],
)
async def test_failures_before_the_first_token_are_raised_by_generate(
    engine: OpenAIEngine, upstream: FakeUpstream, fault: object, error: type[Exception]
) -> None:
    upstream.fail_next(fault)  # type: ignore[arg-type]
    with pytest.raises(error) as exc:
        await engine.generate(ASK)
    assert "127.0.0.1" not in str(exc.value)
    assert engine.replicas[0].outstanding == 0  # the slot and connection were given back


async def test_a_429_carries_the_upstreams_retry_after(
    engine: OpenAIEngine, upstream: FakeUpstream
) -> None:
    upstream.fail_next(Status(429, retry_after=9))
    with pytest.raises(UpstreamRateLimited) as exc:
        await engine.generate(ASK)
    assert exc.value.retry_after == 9


async def test_a_drop_after_the_first_token_is_raised_from_the_stream(
    engine: OpenAIEngine, upstream: FakeUpstream
) -> None:
    upstream.fail_next(Drop(after=1))
    stream = await engine.generate(ASK)
    assert await anext(stream) == TextDelta("Hello")
    with pytest.raises(UpstreamError, match="mid-stream"):
        await anext(stream)
    assert engine.replicas[0].outstanding == 0


async def test_embeddings_pass_through(engine: OpenAIEngine, upstream: FakeUpstream) -> None:
    result = await engine.embed(["ab", "abcd"])
    assert [v[0] for v in result.vectors] == [2.0, 4.0] and result.prompt_tokens == 14
    assert upstream.calls("/embeddings")[-1].body["model"] == "up"


async def test_a_context_error_from_the_upstream_is_the_clients(upstream: FakeUpstream) -> None:
    e = OpenAIEngine(spec(upstream))
    await e.start()
    upstream.fail_next(Status(400))
    with pytest.raises(InvalidRequest) as exc:
        await e.generate(ASK)
    assert not isinstance(exc.value, ContextLengthExceeded)
    await e.close()


async def test_a_missing_key_variable_fails_start_naming_only_the_variable(
    upstream: FakeUpstream,
) -> None:
    e = OpenAIEngine(spec(upstream, api_key="${NOT_SET_ANYWHERE}"), environ={})
    with pytest.raises(EngineUnavailable, match=r"\$\{NOT_SET_ANYWHERE\}"):
        await e.start()


async def test_key_and_header_references_are_resolved_at_start(upstream: FakeUpstream) -> None:
    env = {"KEY": "sk-123", "TEAM": "blue"}
    e = OpenAIEngine(spec(upstream, api_key="${KEY}", headers={"X-Team": "t-${TEAM}"}), environ=env)
    await e.start()
    [x async for x in await e.generate(ASK)]
    headers = upstream.calls()[-1].headers
    assert (headers["authorization"], headers["x-team"]) == ("Bearer sk-123", "t-blue")
    assert "sk-123" not in repr(e.stats()) and "sk-123" not in repr(e.spec)
    await e.close()


async def test_parallel_bounds_the_upstream_and_queues_the_rest(upstream: FakeUpstream) -> None:
    e = OpenAIEngine(spec(upstream, parallel=1, queue_size=1))
    await e.start()
    [x async for x in await e.generate(ASK)]  # a duration to estimate waits from
    upstream.fail_next(Hold(after=1))
    held = await e.generate(ASK)
    assert e.stats().estimated_queue_wait_s > 0  # one running, the next would wait
    waiting = asyncio.create_task(e.generate(ASK))
    await asyncio.sleep(0)  # one turn of the loop: the task runs up to waiting for the slot
    assert e.stats().queue_depth == 1
    with pytest.raises(EngineOverloaded):
        await e.generate(ASK)
    upstream.release()
    [x async for x in held]
    [x async for x in await waiting]
    assert e.stats().running == 0 and e.stats().queue_depth == 0
    await e.close()


async def test_probe_reports_the_upstreams_health(
    engine: OpenAIEngine, upstream: FakeUpstream
) -> None:
    assert await engine.replicas[0].probe(1.0)
    upstream.healthy = False
    assert not await engine.replicas[0].probe(1.0)


async def test_the_attempts_trace_context_goes_with_its_request_only(
    engine: OpenAIEngine, upstream: FakeUpstream
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    token = trace_headers.set((("traceparent", parent), ("tracestate", "k=v")))
    try:
        stream = await engine.generate(ASK)  # the request is made here, in this context
    finally:
        trace_headers.reset(token)
    [x async for x in stream]
    [x async for x in await engine.generate(ASK)]  # a later request outside the attempt
    traced, plain = upstream.calls()[-2:]
    assert (traced.headers["traceparent"], traced.headers["tracestate"]) == (parent, "k=v")
    assert traced.headers["user-agent"] == plain.headers["user-agent"]  # the rest as ever
    assert "traceparent" not in plain.headers and "tracestate" not in plain.headers
