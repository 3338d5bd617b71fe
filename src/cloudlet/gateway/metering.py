"""Metering around one running stream: time to first token, tokens, cost, exactly one end.

:class:`Metered` passes events through as they come (no buffering). ``prime`` reads the first
event before the gateway answers; a failure there belongs to the router, which fails over,
counts it against the breaker and releases the reservation. After that, however the stream
ends (finished, failed mid-stream, or closed early because the client left), the wrapper frees
the replica's in-flight slot, settles the route's cloud reservation with the real usage (or
with what it counted when the stream broke off before the usage arrived), ends the upstream
attempt and then the request's life (:class:`~cloudlet.gateway.life.RequestLife`), which
makes the request's one record. This is the only place a generation's end is noticed.

A class rather than an async generator: ``aclose`` must release the slot even when the stream
is dropped before anyone iterates it, and one object per request costs less than generator
layers on every event.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from cloudlet.domain import (
    Finished,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from cloudlet.domain.tokens import prompt_token_bound
from cloudlet.errors import CloudletError, UpstreamError
from cloudlet.gateway.budget import Hold
from cloudlet.gateway.life import AttemptLife, RequestLife, error_code
from cloudlet.gateway.pricing import cost
from cloudlet.gateway.record import Status
from cloudlet.gateway.router import counts_against_breaker
from cloudlet.gateway.targets import Replica, Target

log = logging.getLogger(__name__)


class Metered(AsyncGenerator[GenerationEvent, None]):
    def __init__(
        self,
        events: AsyncGenerator[GenerationEvent, None],
        *,
        request: GenerationRequest,
        target: Target,
        replica: Replica,
        started: float,
        clock: Callable[[], float],
        hold: Hold | None,
        life: RequestLife | None = None,
        tried: AttemptLife | None = None,
    ) -> None:
        self._events = events
        self._life = life
        self._tried = tried
        self._request = request
        self._target = target
        self._replica = replica
        self._started = started
        self._clock = clock
        self._hold = hold
        self._pending: GenerationEvent | None = None
        self._owned = False  # primed: from here on, failures and the settle are ours
        self._closed = False
        self._usage: Usage | None = None
        self._deltas = 0  # about one token each: what to charge when no usage arrives

    async def prime(self) -> None:
        """Read the first event now; errors propagate to the router untouched."""
        try:
            event = await self._events.__anext__()
        except StopAsyncIteration:
            # An engine's stream ends with Finished; one without it broke: fail over.
            exc = UpstreamError(f"model {self._target.name!r} ended a stream without events")
            await self._finish("error", exc.code)
            raise exc from None
        except BaseException as exc:
            await self._finish("error", error_code(exc))
            raise
        self._record(event)
        self._pending = event
        self._owned = True

    def _record(self, event: GenerationEvent) -> None:
        if isinstance(event, TextDelta | ToolCallDelta):
            if self._deltas == 0:
                self._target.observe_ttft(self._clock() - self._started)
            self._deltas += 1
            if self._life is not None:
                self._life.token()
        elif isinstance(event, Finished):
            self._usage = event.usage
            if self._life is not None:
                self._life.usage = event.usage
                self._life.finish_reason = event.reason
                self._life.queued_s = event.queued_s

    def __aiter__(self) -> Metered:
        return self

    async def __anext__(self) -> GenerationEvent:
        event = self._pending
        if event is not None:
            self._pending = None
        elif self._closed:
            raise StopAsyncIteration
        else:
            try:
                event = await self._events.__anext__()
            except StopAsyncIteration:  # ended without Finished: the upstream broke off
                await self._finish("error", "incomplete_stream")
                raise
            except CloudletError as exc:
                if counts_against_breaker(exc):
                    self._replica.breaker.failure()
                await self._finish("error", exc.code or exc.type, exc)
                raise
            except BaseException as exc:
                await self._finish("error", error_code(exc), exc)
                raise
            self._record(event)
        if isinstance(event, Finished):  # the end: recorded before the client sees it
            await self._finish("cancelled" if event.reason == "cancelled" else "ok", None)
        return event

    async def asend(self, value: None) -> GenerationEvent:
        return await self.__anext__()

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None) -> GenerationEvent:
        await self.aclose()
        raise typ if val is None else val

    async def aclose(self) -> None:
        await self._finish("cancelled", "client closed the stream")

    async def _finish(
        self, status: Status, error: str | None, exc: BaseException | None = None
    ) -> None:
        """The stream's end, once. What needs no await happens first (the slot, the
        attempt, the request's record): each await below may be cancelled again when the
        client left, and must not cost the record. The awaits run whatever the one before
        raised."""
        if self._closed:
            return
        self._closed = True
        self._pending = None
        self._replica.outstanding -= 1
        if self._tried is not None:
            self._tried.end(error if status == "error" else None)
        life = self._life if self._owned else None
        if life is not None:
            if exc is not None:
                life.close_with(exc)
            else:
                life.close(status, error)
        try:
            await self._events.aclose()
        finally:
            try:
                await self._settle_route()
            finally:
                if life is not None:
                    await life.settle()

    async def _settle_route(self) -> None:
        """Settle the route's cloud reservation with what the stream used."""
        price = self._target.options.price
        held = self._hold
        if self._owned and held is not None and price is not None:
            usage = self._usage
            if usage is None:  # broke off or cancelled: the prompt's bound, a token per chunk
                usage = Usage(prompt_token_bound(self._request), self._deltas)
            await held.settle(cost(price, within_bound(usage, self._request, self._target)))


def within_bound(usage: Usage, request: GenerationRequest, target: Target) -> Usage:
    """``usage`` capped at what was reserved for it: the prompt's token bound and the
    completion's ``max_tokens``. An upstream that reports more is wrong (or lying); charging
    more than the hold would let a budget be overspent."""
    completion_limit = request.completion_bound(target.options.max_tokens_default)
    prompt = min(usage.prompt_tokens, prompt_token_bound(request))
    completion = min(usage.completion_tokens, completion_limit)
    if (prompt, completion) != (usage.prompt_tokens, usage.completion_tokens):
        log.warning(
            "model %s reported usage %d+%d above the reserved bound; charged %d+%d",
            target.name,
            usage.prompt_tokens,
            usage.completion_tokens,
            prompt,
            completion,
        )
        return Usage(prompt, completion)
    return usage
