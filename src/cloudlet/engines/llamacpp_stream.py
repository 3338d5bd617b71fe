"""The event stream of one admitted request on the batched engine: one job, or ``n`` choices.

A request's jobs share one event queue; the decode thread puts ``(choice, event)`` pairs in
it. This stream passes text on (tagged with its choice), turns a choice's text that is tool
calls into :class:`~cloudlet.domain.ToolCallDelta`\\ s (one parser per choice), and ends with
exactly one :class:`~cloudlet.domain.Finished` once every choice has ended: the prompt counted
once, the completion tokens of all choices summed, each choice's reason in ``choices``.

A class rather than an async generator: a generator's ``finally`` does not run when it is
closed before its first ``__anext__``, and a client may leave while its request still waits
in the queue. Cancellation is a flag per job that the decode thread reads between steps.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence

from cloudlet.domain import (
    Finished,
    FinishReason,
    GenerationEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from cloudlet.engines.llamacpp_slots import BatchJob
from cloudlet.engines.toolcalls import ToolCallParser


class JobsStream:
    """The events of ``jobs`` (choice ``i`` is ``jobs[i]``, all on one queue); closing the
    stream cancels every job still running."""

    def __init__(self, jobs: list[BatchJob], *, tools: bool) -> None:
        self._jobs = jobs
        self._queue = jobs[0].events
        self._parsers = [ToolCallParser() for _ in jobs] if tools else None
        self._ends: list[Finished | None] = [None] * len(jobs)
        self._left = len(jobs)
        self._pending: deque[GenerationEvent] = deque()
        self._done = False

    def __aiter__(self) -> JobsStream:
        return self

    async def __anext__(self) -> GenerationEvent:
        while not self._pending:
            if self._done:
                raise StopAsyncIteration
            try:
                choice, event = await self._queue.get()
            except BaseException:  # the consumer was cancelled: its client is gone
                self._cancel()
                raise
            if isinstance(event, BaseException):
                self._cancel()
                raise event
            self._take(choice, event)
        return self._pending.popleft()

    def _take(self, choice: int, event: GenerationEvent) -> None:
        parser = self._parsers[choice] if self._parsers is not None else None
        if isinstance(event, Finished):
            if parser is not None:
                self._tagged(choice, parser.flush())
                if event.reason == "stop" and parser.calls:
                    event = dataclasses.replace(event, reason="tool_calls")
            self._ends[choice] = event
            self._left -= 1
            if self._left == 0:
                self._done = True
                self._pending.append(self._last())
        elif parser is not None and isinstance(event, TextDelta):
            self._tagged(choice, parser.feed(event))
        else:
            self._pending.append(event)

    def _tagged(self, choice: int, events: Sequence[TextDelta | ToolCallDelta]) -> None:
        if choice:
            self._pending.extend(dataclasses.replace(e, choice=choice) for e in events)
        else:
            self._pending.extend(events)

    def _last(self) -> Finished:
        ends = [e for e in self._ends if e is not None]
        if len(ends) == 1:
            return ends[0]
        reasons: tuple[FinishReason, ...] = tuple(e.reason for e in ends)
        usage = Usage(ends[0].usage.prompt_tokens, sum(e.usage.completion_tokens for e in ends))
        return Finished(reasons[0], usage, reasons, ends[0].stop_sequence, ends[0].queued_s)

    async def aclose(self) -> None:
        self._cancel()

    def _cancel(self) -> None:
        self._done = True
        self._pending.clear()
        for job in self._jobs:
            job.cancelled.set()  # no-op once the job has finished

    def __del__(self) -> None:
        for job in self._jobs:
            job.cancelled.set()  # dropped without aclose: nobody reads it any more
