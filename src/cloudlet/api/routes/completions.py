"""POST /v1/completions (legacy text completions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cloudlet.api import convert, sse
from cloudlet.api.bodies import read_body, request_body
from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.chat import json_response, usage_out, where_headers
from cloudlet.api.routes.deps import (
    call_of,
    collect_choices,
    finish_reason,
    new_id,
    now,
)
from cloudlet.api.schemas import Completion, CompletionChoice, CompletionLogprobs, CompletionRequest
from cloudlet.domain import Finished, TextDelta, TokenLogprob

router = APIRouter()


@router.post(
    "/v1/completions",
    response_model=Completion,
    responses={**ERROR_RESPONSES, **sse.stream_response("text_completion")},
    summary="Create a text completion",
    openapi_extra=request_body(CompletionRequest),
)
async def completions(raw: Request) -> Any:
    body = await read_body(raw, CompletionRequest)
    call = call_of(raw)
    request = convert.completion_request(body)
    generation = await call.pipeline.generate(
        call.token, request, call.arrival, operation="text_completion", stream=bool(body.stream)
    )
    events, where = generation.events, where_headers(generation.target, generation.spilled)
    rid, created, n = new_id("cmpl"), now(), request.n
    echo = (request.prompt or "") if body.echo else ""

    def choice(
        index: int,
        text: str,
        reason: str | None,
        logprobs: Sequence[TokenLogprob] = (),
        offset: int = 0,
        stop: str | None = None,
    ) -> CompletionChoice:
        return CompletionChoice(
            index=index,
            text=text,
            finish_reason=cast(Literal["stop", "length"] | None, reason),
            logprobs=_logprobs(logprobs, offset) if request.logprobs else None,
            stop_reason=stop,
        )

    def make(choices: list[CompletionChoice], done: Finished | None = None) -> Completion:
        usage = usage_out(done.usage) if done is not None else None
        return Completion(id=rid, created=created, model=body.model, choices=choices, usage=usage)

    if not body.stream:
        wholes = await collect_choices(events, n)
        made = [
            choice(
                i,
                echo + w.text,
                finish_reason(w.done),
                w.logprobs,
                len(echo),
                w.done.stop_sequence,
            )
            for i, w in enumerate(wholes)
        ]
        return json_response(make(made, wholes[0].done), where)
    sent = [len(echo)] * n  # characters of each choice sent so far: logprobs' offsets

    def on_text(delta: TextDelta) -> Completion:
        at = sent[delta.choice]
        sent[delta.choice] += len(delta.text)
        return make([choice(delta.choice, delta.text, None, delta.logprobs, at)])

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def on_finish(done: Finished) -> list[BaseModel]:
        stops = [done.stop_sequence] + [None] * (n - 1)
        lasts = [make([choice(i, "", finish_reason(done, i), stop=stops[i])]) for i in range(n)]
        if include_usage:
            lasts[-1].usage = usage_out(done.usage)
        return list(lasts)

    return StreamingResponse(
        sse.stream_events(
            events,
            on_text=on_text,
            on_finish=on_finish,
            first=[make([choice(i, echo, None)]) for i in range(n)] if echo else None,
        ),
        media_type="text/event-stream",
        headers={**sse.HEADERS, **where},
    )


def _logprobs(tokens: Sequence[TokenLogprob], offset: int) -> CompletionLogprobs:
    """The legacy completions shape: parallel lists, offsets into the choice's text."""
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token.token)
    return CompletionLogprobs(
        tokens=[t.token for t in tokens],
        token_logprobs=[t.logprob for t in tokens],
        top_logprobs=[dict(t.top) for t in tokens],
        text_offset=offsets,
    )
