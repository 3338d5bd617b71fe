"""The batched engine's stream of one request: its choices' events from the decode thread's
queue, text that is tool calls parsed per choice, one Finished at the end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloudlet.domain import (
    ChatMessage,
    Finished,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from cloudlet.engines.llamacpp_slots import BatchJob, Event
from cloudlet.engines.llamacpp_stream import JobsStream
from cloudlet.errors import EngineError

CALL = '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>'
REQUEST = GenerationRequest(model=ModelId("m"), messages=(ChatMessage("user", "hi"),))


def jobs(n: int) -> list[BatchJob]:
    """``n`` choices on one queue, as the engine submits them (no sampler: the stream only
    reads events; the decode thread owns the rest)."""
    queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
    made: list[BatchJob] = []
    for choice in range(n):
        sampler: Any = None
        after = made[0] if made else None
        made.append(BatchJob(REQUEST, [1, 2, 3], 8, sampler, queue, choice=choice, after=after))
    return made


def put(job: BatchJob, event: Event) -> None:
    job.events.put_nowait((job.choice, event))


async def drain(stream: JobsStream) -> list[GenerationEvent]:
    return [event async for event in stream]


async def test_one_choice_passes_through_and_calls_end_with_tool_calls() -> None:
    (job,) = jobs(1)
    for piece in (CALL[:9], CALL[9:]):
        put(job, TextDelta(piece))
    put(job, Finished("stop", Usage(3, 12), stop_sequence=None))
    events = await drain(JobsStream([job], tools=True))
    assert [type(e) for e in events[:-1]] == [ToolCallDelta] * len(events[:-1])
    assert events[-1] == Finished("tool_calls", Usage(3, 12))
    plain = jobs(1)
    put(plain[0], TextDelta("hello <tool"))  # held back: it may open a call
    put(plain[0], Finished("stop", Usage(3, 2), stop_sequence="END"))
    assert await drain(JobsStream(plain, tools=True)) == [
        TextDelta("hello "),
        TextDelta("<tool"),
        Finished("stop", Usage(3, 2), stop_sequence="END"),
    ]


async def test_choices_interleave_and_end_once_with_every_choice() -> None:
    first, second, third = made = jobs(3)
    put(second, TextDelta("b", choice=1))
    put(first, TextDelta(CALL))
    put(second, Finished("length", Usage(3, 8)))
    put(third, TextDelta("c", choice=2))
    put(first, Finished("stop", Usage(3, 5)))
    put(third, Finished("stop", Usage(3, 1), stop_sequence="END"))
    events = await drain(JobsStream(made, tools=True))
    assert events[0] == TextDelta("b", choice=1)
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls and {c.choice for c in calls} == {0} and calls[0].name == "f"
    assert TextDelta("c", choice=2) in events
    # One Finished, last: the prompt once, every choice's tokens, each choice's reason.
    assert [e for e in events if isinstance(e, Finished)] == [events[-1]]
    assert events[-1] == Finished("tool_calls", Usage(3, 14), ("tool_calls", "length", "stop"))


async def test_an_error_in_one_choice_ends_the_stream_and_cancels_them_all() -> None:
    made = jobs(2)
    put(made[1], TextDelta("x", choice=1))
    put(made[0], EngineError("generation failed"))
    stream = JobsStream(made, tools=False)
    assert await anext(stream) == TextDelta("x", choice=1)
    with pytest.raises(EngineError):
        await anext(stream)
    assert all(job.cancelled.is_set() for job in made)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_closing_cancels_every_choice() -> None:
    made = jobs(3)
    stream = JobsStream(made, tools=False)
    await stream.aclose()
    assert all(job.cancelled.is_set() for job in made)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
