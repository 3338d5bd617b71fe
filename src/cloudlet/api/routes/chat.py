"""POST /v1/chat/completions."""

from __future__ import annotations

from typing import Any, Literal, cast

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cloudlet.api import convert, sse
from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.deps import PipelineDep, TokenDep, collect, finish_reason, new_id, now
from cloudlet.api.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    UsageOut,
)
from cloudlet.domain import Finished, Usage

router = APIRouter()


def where_headers(target: str, spilled: bool) -> dict[str, str]:
    """Every answer says which model served it and whether the route spilled to get there."""
    return {"x-cloudlet-target": target, "x-cloudlet-spilled": "true" if spilled else "false"}


def json_response(payload: BaseModel, headers: dict[str, str]) -> Response:
    """Serialize once, in pydantic's core: returning the model would have FastAPI validate it
    again against response_model first (a measurable share of a fast request)."""
    return Response(payload.model_dump_json(), media_type="application/json", headers=headers)


def usage_out(usage: Usage) -> UsageOut:
    return UsageOut(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={**ERROR_RESPONSES, **sse.stream_response("chat.completion.chunk")},
    summary="Create a chat completion",
)
async def chat_completions(
    body: ChatCompletionRequest, pipeline: PipelineDep, token: TokenDep
) -> Any:
    generation = await pipeline.generate(token, convert.chat_request(body))
    events, where = generation.events, where_headers(generation.target, generation.spilled)
    rid, created = new_id("chatcmpl"), now()
    if not body.stream:
        text, done = await collect(events)
        completion = ChatCompletion(
            id=rid,
            created=created,
            model=body.model,
            choices=[
                ChatChoice(
                    message=AssistantMessage(content=text),
                    finish_reason=cast(Literal["stop", "length"], finish_reason(done)),
                )
            ],
            usage=usage_out(done.usage),
        )
        return json_response(completion, where)

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta: Delta, reason: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=rid,
            created=created,
            model=body.model,
            choices=[
                ChunkChoice(
                    delta=delta, finish_reason=cast(Literal["stop", "length"] | None, reason)
                )
            ],
        )

    def on_finish(done: Finished) -> list[BaseModel]:
        out: list[BaseModel] = [chunk(Delta(), finish_reason(done))]
        if include_usage:
            out.append(
                ChatCompletionChunk(
                    id=rid,
                    created=created,
                    model=body.model,
                    choices=[],
                    usage=usage_out(done.usage),
                )
            )
        return out

    return StreamingResponse(
        sse.stream_events(
            events,
            on_text=lambda text: chunk(Delta(content=text)),
            on_finish=on_finish,
            first=[chunk(Delta(role="assistant", content=""))],
        ),
        media_type="text/event-stream",
        headers={**sse.HEADERS, **where},
    )
