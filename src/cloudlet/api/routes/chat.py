"""POST /v1/chat/completions."""

from __future__ import annotations

from typing import Any, Literal, cast

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cloudlet.api import convert, sse
from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.deps import GatewayDep, collect, finish_reason, new_id, now
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

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A chat completion, or with `stream: true` server-sent events of "
        "chat.completion.chunk objects ending with `data: [DONE]`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


def usage_out(usage: Usage) -> UsageOut:
    return UsageOut(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={**ERROR_RESPONSES, **_STREAM_DOC},
    summary="Create a chat completion",
)
async def chat_completions(body: ChatCompletionRequest, gateway: GatewayDep) -> Any:
    events = await gateway.generate(convert.chat_request(body))
    rid, created = new_id("chatcmpl"), now()
    if not body.stream:
        text, done = await collect(events)
        return ChatCompletion(
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
        headers=sse.HEADERS,
    )
