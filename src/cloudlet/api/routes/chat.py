"""POST /v1/chat/completions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from cloudlet.api import convert, sse
from cloudlet.api.bodies import read_body, request_body
from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.deps import (
    Collected,
    call_of,
    collect_choices,
    finish_reason,
    new_id,
    now,
)
from cloudlet.api.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatFinish,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    FunctionCallOut,
    FunctionDeltaOut,
    TokenLogprobOut,
    ToolCallDeltaOut,
    ToolCallOut,
    TopLogprobOut,
    UsageOut,
)
from cloudlet.domain import Finished, TextDelta, TokenLogprob, ToolCall, ToolCallDelta, Usage

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


def logprobs_out(tokens: Sequence[TokenLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            TokenLogprobOut(
                token=t.token,
                logprob=t.logprob,
                bytes=list(t.token.encode()),
                top_logprobs=[
                    TopLogprobOut(token=tok, logprob=lp, bytes=list(tok.encode()))
                    for tok, lp in t.top
                ],
            )
            for t in tokens
        ]
    )


def tool_calls_out(calls: Sequence[ToolCall]) -> list[ToolCallOut] | None:
    if not calls:
        return None
    return [
        ToolCallOut(id=c.id, function=FunctionCallOut(name=c.name, arguments=c.arguments))
        for c in calls
    ]


def tool_delta_out(event: ToolCallDelta) -> ToolCallDeltaOut:
    first = event.id is not None or event.name is not None
    return ToolCallDeltaOut(
        index=event.index,
        id=event.id,
        type="function" if first else None,
        function=FunctionDeltaOut(name=event.name, arguments=event.arguments),
    )


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={**ERROR_RESPONSES, **sse.stream_response("chat.completion.chunk")},
    summary="Create a chat completion",
    openapi_extra=request_body(ChatCompletionRequest),
)
async def chat_completions(raw: Request) -> Any:
    body = await read_body(raw, ChatCompletionRequest)
    call = call_of(raw)
    request = convert.chat_request(body)
    generation = await call.pipeline.generate(
        call.token, request, call.arrival, stream=bool(body.stream)
    )
    events, where = generation.events, where_headers(generation.target, generation.spilled)
    rid, created, n = new_id("chatcmpl"), now(), request.n
    if not body.stream:
        choices = await collect_choices(events, n)
        completion = ChatCompletion(
            id=rid,
            created=created,
            model=body.model,
            choices=[_choice(i, whole, request.logprobs) for i, whole in enumerate(choices)],
            usage=usage_out(choices[0].done.usage),
        )
        return json_response(completion, where)

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(
        choice: int,
        delta: Delta,
        reason: str | None = None,
        logprobs: ChoiceLogprobs | None = None,
        stop: str | None = None,
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=rid,
            created=created,
            model=body.model,
            choices=[
                ChunkChoice(
                    index=choice,
                    delta=delta,
                    finish_reason=cast(ChatFinish | None, reason),
                    logprobs=logprobs,
                    stop_reason=stop,
                )
            ],
        )

    def on_text(event: TextDelta) -> ChatCompletionChunk:
        logprobs = logprobs_out(event.logprobs) if request.logprobs else None
        return chunk(event.choice, Delta(content=event.text), logprobs=logprobs)

    def on_finish(done: Finished) -> list[BaseModel]:
        out: list[BaseModel] = [
            chunk(i, Delta(), finish_reason(done, i), stop=done.stop_sequence if i == 0 else None)
            for i in range(n)
        ]
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
            on_text=on_text,
            on_finish=on_finish,
            first=[chunk(i, Delta(role="assistant", content="")) for i in range(n)],
            on_tool=lambda event: chunk(event.choice, Delta(tool_calls=[tool_delta_out(event)])),
        ),
        media_type="text/event-stream",
        headers={**sse.HEADERS, **where},
    )


def _choice(index: int, whole: Collected, logprobs: bool) -> ChatChoice:
    calls = tool_calls_out(whole.tool_calls)
    return ChatChoice(
        index=index,
        message=AssistantMessage(
            content=whole.text if whole.text or not calls else None, tool_calls=calls
        ),
        finish_reason=cast(ChatFinish, finish_reason(whole.done)),
        logprobs=logprobs_out(whole.logprobs) if logprobs else None,
        stop_reason=whole.done.stop_sequence,
    )
