"""``n`` choices on the embedded llama.cpp engine, with the real SmolLM2 model: one prompt
evaluation shared by every choice (its KV cells copied), each choice sampled on its own.

One engine serves the whole module; every test leaves it idle again. Checks that depend on
sampling are greedy, or compare seeded choices with each other, never with a fixed text.
"""

from __future__ import annotations

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
    SamplingParams,
    TextDelta,
    Tool,
    ToolCallDelta,
    ToolChoice,
)
from cloudlet.engines.llamacpp_batched import BatchedLlamaCppEngine
from cloudlet.errors import InvalidRequest
from tests.batched_engine import drained, started
from tests.safe_mode import for_this_machine

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

PARALLEL = 6
GREEDY = SamplingParams(temperature=0.0)
# About 120 tokens: enough that evaluating it once or n times is plain in the counters.
SYSTEM = (
    "You are Tern, the assistant of the Quayside Rowing Club. You answer questions about "
    "membership, boat bookings, safety rules and races. The boathouse opens at six in the "
    "morning and closes at eight in the evening every day but Monday. Members book a boat "
    "online up to a week ahead; a single scull can be booked for ninety minutes at a time. "
    "Every rower passes a capsize drill before rowing alone. Be brief and precise."
)


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    base = for_this_machine(load_spec(None, environ={}).models[0])
    return base.model_copy(update={"context": 1024, "parallel": PARALLEL, "queue_size": 4})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(spec: ModelSpec) -> AsyncIterator[BatchedLlamaCppEngine]:
    async for started_engine in started(spec):
        yield started_engine


def chat(
    question: str,
    *,
    n: int = 1,
    system: str = SYSTEM,
    max_tokens: int = 24,
    sampling: SamplingParams = GREEDY,
    **extra: object,
) -> GenerationRequest:
    return GenerationRequest(
        model=ModelId("smollm2"),
        messages=(ChatMessage("system", system), ChatMessage("user", question)),
        max_tokens=max_tokens,
        sampling=sampling,
        n=n,
        **extra,  # type: ignore[arg-type]
    )


async def collect(
    events: AsyncIterator[GenerationEvent], n: int
) -> tuple[list[str], list[list[ToolCallDelta]], Finished]:
    texts = [""] * n
    calls: list[list[ToolCallDelta]] = [[] for _ in range(n)]
    async for event in events:
        if isinstance(event, TextDelta):
            texts[event.choice] += event.text
        elif isinstance(event, ToolCallDelta):
            calls[event.choice].append(event)
        else:
            return texts, calls, event
    raise AssertionError("the stream ended without Finished")


async def run(
    engine: BatchedLlamaCppEngine, request: GenerationRequest
) -> tuple[list[str], Finished]:
    texts, _, finished = await collect(await engine.generate(request), request.n)
    return texts, finished


async def test_choices_evaluate_the_prompt_once(engine: BatchedLlamaCppEngine) -> None:
    # A prompt no slot holds: the first choice evaluates it, the others take a copy of its
    # cells and sample their first token from its logits.
    n = 4
    request = chat("When does the boathouse open?", n=n, system=SYSTEM.replace("Tern", "Skua"))
    before = engine.stats()
    texts, finished = await run(engine, request)
    after = engine.stats()
    prompt = finished.usage.prompt_tokens
    evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated
    cached = after.prompt_tokens_cached - before.prompt_tokens_cached
    assert prompt > 100
    assert evaluated + cached == n * prompt  # every choice's prompt accounted for
    assert evaluated <= prompt, (evaluated, cached)  # once (less what a slot held already)
    assert cached >= (n - 1) * prompt
    assert len(finished.choices) == n and all(texts)
    assert finished.usage.completion_tokens <= n * 24
    # Greedy, every choice samples from the same logits and its own copy of the cells.
    assert texts == [texts[0]] * n


async def test_greedy_choices_are_the_answer_alone(engine: BatchedLlamaCppEngine) -> None:
    system = SYSTEM.replace("Tern", "Gannet")
    await run(engine, chat("Can I row alone?", system=system))  # the prompt is cached now
    (alone,), single = await run(engine, chat("Can I row alone?", system=system))
    texts, finished = await run(engine, chat("Can I row alone?", n=3, system=system))
    # The copied cells hold the prompt exactly: each choice continues as the request alone.
    assert texts == [alone] * 3
    assert single.choices == ()  # a request of one choice reports no per-choice reasons
    assert finished.choices == (single.reason,) * 3
    assert finished.usage.prompt_tokens == single.usage.prompt_tokens  # counted once
    assert finished.usage.completion_tokens == 3 * single.usage.completion_tokens


async def test_seeded_choices_each_sample_their_own(engine: BatchedLlamaCppEngine) -> None:
    sampling = SamplingParams(temperature=1.0, seed=77)
    request = chat("Describe a race day.", n=4, sampling=sampling, max_tokens=32, logprobs=True)
    texts = [""] * 4
    tokens = [0] * 4
    async for event in await engine.generate(request):
        if isinstance(event, TextDelta):
            texts[event.choice] += event.text
            tokens[event.choice] += len(event.logprobs)  # one entry per generated token
        elif isinstance(event, Finished):
            finished = event
    assert len(set(texts)) > 1, texts  # seeds 77, 78, 79, 80: not one sample four times
    assert all(0 < t <= 32 for t in tokens), tokens
    assert finished.usage.completion_tokens == sum(tokens)  # every choice's tokens, summed


async def test_tool_calls_in_every_choice_follow_the_schema(engine: BatchedLlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {
            "boat": {"type": "string", "enum": ["single", "double", "four"]},
            "minutes": {"type": "integer", "minimum": 30, "maximum": 90},
        },
        "required": ["boat", "minutes"],
        "additionalProperties": False,
    }
    tool = Tool("book_boat", "Book a boat for a number of minutes", schema)
    request = chat(
        "Book me a single scull for an hour.",
        n=3,
        max_tokens=60,
        sampling=SamplingParams(temperature=0.8, seed=5),
        tools=(tool,),
        tool_choice=ToolChoice("function", "book_boat"),
    )
    texts, calls, finished = await collect(await engine.generate(request), 3)
    assert finished.choices == ("tool_calls",) * 3, (texts, finished)
    for pieces in calls:
        assert pieces[0].name == "book_boat" and pieces[0].id
        assert {p.index for p in pieces} == {0}
        jsonschema.validate(json.loads("".join(p.arguments for p in pieces)), schema)


async def test_closing_the_stream_cancels_every_choice(engine: BatchedLlamaCppEngine) -> None:
    stream = await engine.generate(chat("Tell me all the safety rules.", n=3, max_tokens=500))
    assert isinstance(await anext(stream), TextDelta)
    assert engine.stats().running == 3
    await stream.aclose()  # type: ignore[attr-defined]
    await drained(engine)


async def test_more_choices_than_sequences_is_a_400(engine: BatchedLlamaCppEngine) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await engine.generate(chat("Hi", n=PARALLEL + 1))
    assert caught.value.status == 400 and caught.value.param == "n"
    assert f"at most {PARALLEL}" in caught.value.message
