"""Request-scoped access to app state (the gateway lives on ``app.state``, not in a global)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from cloudlet.domain import Finished, GenerationEvent, TextDelta, TokenLogprob, ToolCall
from cloudlet.gateway import Gateway
from cloudlet.gateway.life import Arrival
from cloudlet.gateway.pipeline import Pipeline


async def _gateway(request: Request) -> Gateway:
    # async: FastAPI runs a sync dependency in its thread pool, a hop on every request.
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]


async def _pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


def bearer_of(request: Request) -> str | None:
    """The API key from ``Authorization: Bearer KEY`` (or ``x-api-key``), if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


async def bearer(request: Request) -> str | None:
    return bearer_of(request)


def arrival_of(request: Request) -> Arrival:
    """The request's id and arrival time (set by :class:`cloudlet.api.request_ids.RequestIds`;
    an app mounted without it gets a fresh one)."""
    arrival: Arrival | None = getattr(request.state, "arrival", None)
    return arrival if arrival is not None else Arrival.now()


async def _arrival(request: Request) -> Arrival:
    return arrival_of(request)


@dataclass(frozen=True, slots=True)
class Call:
    """What a generation endpoint needs besides its body: the app's pipeline, the caller's
    API key and the request's arrival.

    Read from the request in one step (:func:`call_of`) rather than as three dependencies:
    FastAPI resolves each dependency on every request, and on the generation endpoints, the
    hot path, three of them cost more than the rest of the argument handling.
    """

    pipeline: Pipeline
    token: str | None
    arrival: Arrival


def call_of(request: Request) -> Call:
    pipeline: Pipeline = request.app.state.pipeline
    return Call(pipeline, bearer_of(request), arrival_of(request))


PipelineDep = Annotated[Pipeline, Depends(_pipeline)]
TokenDep = Annotated[str | None, Depends(bearer)]
ArrivalDep = Annotated[Arrival, Depends(_arrival)]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


@dataclass
class Collected:
    """A whole choice: its text, tool calls (in order), log-probabilities, and how it ended
    (``done``: the generation's usage, the choice's own reason and stop string)."""

    text: str
    done: Finished
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


async def collect_all(events: AsyncGenerator[GenerationEvent, None]) -> Collected:
    """Drain a stream of one choice (non-streaming responses)."""
    return (await collect_choices(events, 1))[0]


async def collect_choices(events: AsyncGenerator[GenerationEvent, None], n: int) -> list[Collected]:
    """Drain a stream of ``n`` choices; tool-call pieces are joined per choice and index."""
    parts: list[list[str]] = [[] for _ in range(n)]
    logprobs: list[list[TokenLogprob]] = [[] for _ in range(n)]
    calls: list[dict[int, list[str]]] = [{} for _ in range(n)]  # index -> [id, name, args...]
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                parts[event.choice].append(event.text)
                logprobs[event.choice].extend(event.logprobs)
            elif isinstance(event, Finished):
                return [
                    Collected(
                        "".join(parts[i]),
                        _choice_end(event, i),
                        [
                            ToolCall(id=c[0], name=c[1], arguments="".join(c[2:]))
                            for _, c in sorted(calls[i].items())
                        ],
                        logprobs[i],
                    )
                    for i in range(n)
                ]
            else:
                call = calls[event.choice].setdefault(event.index, ["", ""])
                if event.id:
                    call[0] = event.id
                if event.name:
                    call[1] = event.name
                call.append(event.arguments)
    finally:
        await events.aclose()
    raise RuntimeError("engine stream ended without a Finished event")


def _choice_end(done: Finished, choice: int) -> Finished:
    if not done.choices:
        return done
    stop = done.stop_sequence if choice == 0 else None
    return Finished(done.reason_of(choice), done.usage, stop_sequence=stop)


def finish_reason(event: Finished, choice: int = 0) -> str:
    """OpenAI's finish_reason of a choice (a cancelled generation never reaches a client)."""
    reason = event.reason_of(choice)
    return reason if reason in ("length", "tool_calls") else "stop"
