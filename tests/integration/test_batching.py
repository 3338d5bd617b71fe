"""Continuous batching on the embedded llama.cpp engine (issue #3), with the real SmolLM2 model.

One engine serves the whole module (loading it once); every test leaves it idle again. No test
asserts a duration: waits are bounded only so that a hang fails instead of blocking the run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import jsonschema  # type: ignore[import-untyped]
import pytest
import pytest_asyncio

from cloudlet.config import ModelSpec, load_spec
from cloudlet.domain import (
    ChatMessage,
    Finished,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    ResponseFormat,
    SamplingParams,
    TextDelta,
)
from cloudlet.engines.llamacpp_batched import BatchedLlamaCppEngine
from cloudlet.errors import ContextLengthExceeded, EngineOverloaded, EngineUnavailable
from tests.batched_engine import drained, started
from tests.safe_mode import for_this_machine

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

PARALLEL = 8
QUEUE_SIZE = 4
CONTEXT = 1024
GREEDY = SamplingParams(temperature=0.0)
WORDS = ("apple", "banana", "cherry", "dolphin", "elephant", "falcon", "guitar", "hammer")
# About 150 tokens that several requests share, as a system prompt or a chat history would.
SYSTEM = (
    "You are Quill, the assistant of the Harbour Street Library. You answer questions about "
    "opening hours, membership, borrowing rules and events. The library opens at nine in the "
    "morning and closes at six in the evening from Monday to Friday, and at one in the "
    "afternoon on Saturday; it is closed on Sunday. Members may borrow up to eight books for "
    "three weeks and renew them twice, online or at the desk. Membership is free for residents "
    "of the city and costs twelve euros a year for everyone else. Late returns cost twenty "
    "cents a day per book. Be brief, friendly and precise, and never invent facts."
)


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    base = for_this_machine(load_spec(None, environ={}).models[0])
    return base.model_copy(
        update={"context": CONTEXT, "parallel": PARALLEL, "queue_size": QUEUE_SIZE}
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(spec: ModelSpec) -> AsyncIterator[BatchedLlamaCppEngine]:
    async for started_engine in started(spec):
        yield started_engine


def chat(
    text: str,
    *,
    system: str | None = None,
    max_tokens: int | None = 48,
    sampling: SamplingParams = GREEDY,
    **extra: object,
) -> GenerationRequest:
    messages = ((ChatMessage("system", system),) if system else ()) + (ChatMessage("user", text),)
    return GenerationRequest(
        model=ModelId("smollm2"),
        messages=messages,
        max_tokens=max_tokens,
        sampling=sampling,
        **extra,  # type: ignore[arg-type]
    )


async def run(engine: BatchedLlamaCppEngine, request: GenerationRequest) -> tuple[str, Finished]:
    text = ""
    async for event in await engine.generate(request):
        if isinstance(event, TextDelta):
            text += event.text
        else:
            return text, event
    raise AssertionError("the stream ended without Finished")


async def test_concurrent_streams_get_their_own_answers(
    engine: BatchedLlamaCppEngine,
) -> None:
    requests = [chat(f"Repeat the word '{word}' three times.", max_tokens=24) for word in WORDS]
    results = await asyncio.gather(*(run(engine, r) for r in requests))
    for word, (text, finished) in zip(WORDS, results, strict=True):
        lowered = text.lower()
        assert word in lowered, (word, text)
        others = [w for w in WORDS if w != word and w in lowered]
        assert not others, f"{word!r} got words of other streams {others}: {text!r}"
        assert finished.usage.completion_tokens > 0
    stats = engine.stats()
    assert stats.tokens_per_second > 0
    assert stats.requests_total >= len(WORDS)
    # Each answer is what the same request gets alone: batching changes nothing.
    for request, (text, _) in zip(requests[:2], results, strict=False):
        alone, _ = await run(engine, request)
        assert alone == text


async def test_queued_requests_run_when_a_whole_batch_ends_at_once(
    engine: BatchedLlamaCppEngine,
) -> None:
    # The same max_tokens for all: every running sequence ends in the same decode step, and
    # the queued ones must start even though nothing new arrives.
    requests = [
        chat(f"Write a long story about a {word}.", max_tokens=6)
        for word in WORDS + WORDS[:QUEUE_SIZE]
    ]
    # Hold the decode thread off (white box) so that it takes all of them in one round: the
    # first eight then prefill in one step and end in one step.
    assert engine._scheduler is not None
    with engine._scheduler._cond:
        streams = [await engine.generate(r) for r in requests]

    async def drain(stream: AsyncIterator[GenerationEvent]) -> Finished:
        async for event in stream:
            if isinstance(event, Finished):
                return event
        raise AssertionError("no Finished")

    finished = await asyncio.wait_for(asyncio.gather(*(drain(s) for s in streams)), 120)
    assert [f.usage.completion_tokens for f in finished] == [6] * len(requests)


async def test_cancelled_streams_free_their_slots(engine: BatchedLlamaCppEngine) -> None:
    started = asyncio.Semaphore(0)

    async def consume(stream: AsyncIterator[GenerationEvent]) -> None:
        first = True
        async for _ in stream:  # a client reading its stream until it disconnects
            if first:
                started.release()
                first = False

    long = chat("Write a very long story about a lighthouse keeper.", max_tokens=800)
    streams = [await engine.generate(long) for _ in range(PARALLEL + QUEUE_SIZE)]
    stats = engine.stats()
    assert (stats.running, stats.queue_depth) == (PARALLEL, QUEUE_SIZE)
    tasks = [asyncio.create_task(consume(s)) for s in streams]
    for _ in range(PARALLEL):  # every slot is streaming; the rest wait in the queue
        await asyncio.wait_for(started.acquire(), 120)
    for task in tasks:  # the clients disconnect: the server cancels their tasks
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await drained(engine)
    text, finished = await run(engine, chat("Say hello.", max_tokens=8))
    assert finished.reason in ("stop", "length")
    assert text


async def test_closing_a_queued_stream_cancels_it(engine: BatchedLlamaCppEngine) -> None:
    long = chat("Write a very long story about a lighthouse keeper.", max_tokens=800)
    streams = [await engine.generate(long) for _ in range(PARALLEL + 2)]
    assert engine.stats().queue_depth == 2
    for stream in streams:  # never read: closing must still cancel (async generators would not)
        await stream.aclose()  # type: ignore[attr-defined]
    await drained(engine)


async def test_shared_prefix_is_reused(engine: BatchedLlamaCppEngine) -> None:
    first = chat("When does the library open on Saturday?", system=SYSTEM, max_tokens=16)
    await run(engine, first)
    before = engine.stats()
    second = chat("How much does membership cost?", system=SYSTEM, max_tokens=16)
    text, finished = await run(engine, second)
    after = engine.stats()
    cached = after.prompt_tokens_cached - before.prompt_tokens_cached
    evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated
    assert cached >= 120, (cached, evaluated)  # the system prompt came from the cache
    assert evaluated < finished.usage.prompt_tokens - 120
    assert cached + evaluated == finished.usage.prompt_tokens
    assert text


async def test_prefix_is_shared_with_a_running_sequence(engine: BatchedLlamaCppEngine) -> None:
    # A prefix no slot holds yet; the second request lands in another slot and shares the cells
    # of the first while that one is still generating.
    system = SYSTEM.replace("Quill", "Inkwell")
    busy = await engine.generate(
        chat("Tell me everything about borrowing.", system=system, max_tokens=200)
    )
    await anext(busy)  # its prompt is in the KV cache now, and it keeps generating
    before = engine.stats()
    question = chat("Is it open on Sunday?", system=system, max_tokens=16)
    text, finished = await run(engine, question)
    cached = engine.stats().prompt_tokens_cached - before.prompt_tokens_cached
    await busy.aclose()  # type: ignore[attr-defined]
    assert cached >= 120
    assert finished.usage.completion_tokens > 0
    await drained(engine)
    alone, _ = await run(engine, question)  # the shared cells held the right prefix
    assert alone == text


async def test_long_prompt_is_prefilled_in_chunks(engine: BatchedLlamaCppEngine) -> None:
    # ~700 prompt tokens: more than one decode step takes (512), so it spreads over steps
    # while a short stream runs beside it; the answer is the same as with a cached prompt.
    notes = " ".join(f"Note {i}: shelf {i % 7} holds atlases." for i in range(70))
    long = chat(f"{notes}\nWhich shelf holds atlases according to note 3?", max_tokens=16)
    (text, finished), (short, _) = await asyncio.gather(
        run(engine, long), run(engine, chat("Say hello.", max_tokens=24))
    )
    assert finished.usage.prompt_tokens > 600
    assert text and short
    again, _ = await run(engine, long)
    # The same first line: a prompt prefilled wrongly in chunks shows at once. Later tokens may
    # part at a near-tie, since this run decodes alone and the first beside the short stream
    # (llama.cpp's CPU kernels round differently by batch size): seen once in CI, after
    # "Note 3: shelf 4 holds atlases."
    first = text.split("\n", 1)[0]
    assert len(first) >= 10, text
    assert again.split("\n", 1)[0] == first, (again, text)


async def test_history_evicted_from_its_slot_is_restored_from_memory(
    engine: BatchedLlamaCppEngine,
) -> None:
    system = SYSTEM.replace("Harbour Street", "Old Mill Road")
    first = chat("When are you open on Saturday?", system=system, max_tokens=24)
    answer, _ = await run(engine, first)
    # Eight other conversations take every slot: the first one's cells are overwritten.
    others = [
        chat("Hello!", system=f"You are {word.title()}Bot. " + SYSTEM[120:400], max_tokens=4)
        for word in WORDS
    ]
    await asyncio.gather(*(run(engine, r) for r in others))
    before = engine.stats()
    follow_up = GenerationRequest(
        model=ModelId("smollm2"),
        messages=(
            ChatMessage("system", system),
            ChatMessage("user", "When are you open on Saturday?"),
            ChatMessage("assistant", answer),
            ChatMessage("user", "And on Sunday?"),
        ),
        max_tokens=8,
        sampling=GREEDY,
    )
    text, finished = await run(engine, follow_up)
    cached = engine.stats().prompt_tokens_cached - before.prompt_tokens_cached
    assert cached >= 140, (cached, finished.usage.prompt_tokens)
    assert text


async def test_full_queue_answers_503(engine: BatchedLlamaCppEngine) -> None:
    long = chat("Write a very long story about a lighthouse keeper.", max_tokens=800)
    streams = [await engine.generate(long) for _ in range(PARALLEL + QUEUE_SIZE)]
    try:
        assert isinstance(await anext(streams[0]), TextDelta)  # running for a moment now
        stats = engine.stats()
        assert (stats.running, stats.queue_depth, stats.capacity) == (
            PARALLEL,
            QUEUE_SIZE,
            PARALLEL,
        )
        assert stats.estimated_queue_wait_s > 0
        with pytest.raises(EngineOverloaded) as caught:
            await engine.generate(long)
        assert caught.value.status == 503
        assert caught.value.retry_after is not None
        assert caught.value.retry_after >= 1
    finally:
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
    await drained(engine)


async def test_json_schema_output_validates(engine: BatchedLlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    request = chat(
        "Invent a person and describe them as JSON with a name and an age.",
        max_tokens=120,
        response_format=ResponseFormat(kind="json_schema", schema=schema),
    )
    # Alongside free-text streams: each sequence has its own grammar state.
    results = await asyncio.gather(
        run(engine, request), run(engine, chat("Say hello.")), run(engine, request)
    )
    for text, finished in (results[0], results[2]):
        assert finished.reason == "stop", text
        jsonschema.validate(json.loads(text), schema)


async def test_seed_makes_sampling_reproducible(engine: BatchedLlamaCppEngine) -> None:
    sampling = SamplingParams(temperature=0.9, top_p=0.95, seed=1234)
    request = chat("Write a line of a poem about rain.", max_tokens=24, sampling=sampling)
    first, _ = await run(engine, request)
    second, _ = await run(engine, request)
    assert first == second
    # And while other sequences share the batch.
    (third, _), *_ = await asyncio.gather(
        run(engine, request), run(engine, chat("Count to ten.")), run(engine, chat("Hi!"))
    )
    assert third == first


async def test_stop_string_ends_the_stream_before_it(engine: BatchedLlamaCppEngine) -> None:
    question = "Count from one to twenty in words, separated by commas."
    full, _ = await run(engine, chat(question, max_tokens=40))
    # A piece of the answer that occurs once, nearest its middle (the answer may repeat itself).
    starts = sorted(range(1, len(full) - 3), key=lambda i: abs(i - len(full) // 2))
    stop = next((full[i : i + 4] for i in starts if full.count(full[i : i + 4]) == 1), "")
    assert len(stop) == 4, full
    text, finished = await run(engine, chat(question, max_tokens=40, stop=(stop,)))
    assert finished.reason == "stop"
    assert text == full[: full.index(stop)]


async def test_max_tokens_ends_with_length(engine: BatchedLlamaCppEngine) -> None:
    text, finished = await run(engine, chat("Write a long story about a dragon.", max_tokens=7))
    assert finished.reason == "length"
    assert finished.usage.completion_tokens == 7
    assert text


async def test_context_length_exceeded_before_the_stream(engine: BatchedLlamaCppEngine) -> None:
    with pytest.raises(ContextLengthExceeded) as caught:
        await engine.generate(chat("lighthouse " * CONTEXT))
    assert caught.value.code == "context_length_exceeded"
    assert f"maximum context length is {CONTEXT} tokens" in caught.value.message
    with pytest.raises(ContextLengthExceeded):
        await engine.generate(chat("Hi", max_tokens=CONTEXT))
    assert engine.stats().running == 0


async def test_close_ends_running_and_waiting_streams(spec: ModelSpec) -> None:
    engine = BatchedLlamaCppEngine(spec.model_copy(update={"parallel": 1, "context": 256}))
    await engine.start()
    long = chat("Write a very long story about a lighthouse keeper.", max_tokens=200)
    running, waiting = await engine.generate(long), await engine.generate(long)
    assert isinstance(await anext(running), TextDelta)
    await engine.close()
    for stream in (running, waiting):
        with pytest.raises(EngineUnavailable):
            async for _ in stream:
                pass
    with pytest.raises(EngineUnavailable):
        await engine.generate(long)
    await engine.close()  # idempotent


async def test_queue_size_zero_admits_up_to_parallel(spec: ModelSpec) -> None:
    engine = BatchedLlamaCppEngine(spec.model_copy(update={"parallel": 2, "queue_size": 0}))
    await engine.start()
    try:
        long = chat("Write a very long story about a lighthouse keeper.", max_tokens=200)
        streams = [await engine.generate(long) for _ in range(2)]
        with pytest.raises(EngineOverloaded):
            await engine.generate(long)
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
        await drained(engine)
        text, _ = await run(engine, chat("Say hello.", max_tokens=4))
        assert text
    finally:
        await engine.close()
