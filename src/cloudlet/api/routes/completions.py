"""POST /v1/completions (legacy text completions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cloudlet.api import convert, sse
from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.chat import json_response, usage_out, where_headers
from cloudlet.api.routes.deps import (
    ArrivalDep,
    PipelineDep,
    TokenDep,
    collect_all,
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
)
async def completions(
    body: CompletionRequest, pipeline: PipelineDep, token: TokenDep, arrival: ArrivalDep
) -> Any:
    request = convert.completion_request(body)
    generation = await pipeline.generate(
        token, request, arrival, operation="text_completion", stream=bool(body.stream)
    )
    events, where = generation.events, where_headers(generation.target, generation.spilled)
    rid, created = new_id("cmpl"), now()
    echo = (request.prompt or "") if body.echo else ""

    def make(
        text: str,
        reason: str | None,
        done: Finished | None = None,
        logprobs: Sequence[TokenLogprob] = (),
        offset: int = 0,
    ) -> Completion:
        return Completion(
            id=rid,
            created=created,
            model=body.model,
            choices=[
                CompletionChoice(
                    text=text,
                    finish_reason=cast(Literal["stop", "length"] | None, reason),
                    logprobs=_logprobs(logprobs, offset) if request.logprobs else None,
                )
            ],
            usage=usage_out(done.usage) if done is not None else None,
        )

    if not body.stream:
        whole = await collect_all(events)
        done = whole.done
        return json_response(
            make(echo + whole.text, finish_reason(done), done, whole.logprobs, len(echo)), where
        )
    sent = len(echo)

    def on_text(delta: TextDelta) -> Completion:
        nonlocal sent
        chunk = make(delta.text, None, logprobs=delta.logprobs, offset=sent)
        sent += len(delta.text)
        return chunk

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def on_finish(done: Finished) -> list[BaseModel]:
        last = make("", finish_reason(done))
        if include_usage:
            last.usage = usage_out(done.usage)
        return [last]

    return StreamingResponse(
        sse.stream_events(
            events,
            on_text=on_text,
            on_finish=on_finish,
            first=[make(echo, None)] if echo else None,
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
