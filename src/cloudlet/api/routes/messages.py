"""POST /v1/messages and /v1/messages/count_tokens (the Anthropic Messages API).

A translation onto the same pipeline as chat completions: the same keys (``x-api-key`` or
Bearer), routing, budgets and ledger. Errors take Anthropic's shape (see api/errors.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from cloudlet.api import anthropic_convert as convert
from cloudlet.api import sse
from cloudlet.api.anthropic_schemas import (
    CountTokensRequest,
    MessageOut,
    MessagesRequest,
    TextOut,
    TokenCount,
    ToolUseOut,
    UsageOut,
)
from cloudlet.api.bodies import read_body, request_body
from cloudlet.api.errors import ERROR_RESPONSES, anthropic_error_body
from cloudlet.api.routes.chat import json_response, where_headers
from cloudlet.api.routes.deps import PipelineDep, TokenDep, call_of, collect_all, new_id
from cloudlet.api.routes.tokenize import exact_tokens
from cloudlet.domain import Finished, GenerationEvent, TextDelta
from cloudlet.domain.tokens import estimate_prompt_tokens, estimate_tokens
from cloudlet.errors import CloudletError

router = APIRouter()


def _id() -> str:
    return new_id("msg").replace("-", "_")


@router.post(
    "/v1/messages",
    response_model=MessageOut,
    responses={**ERROR_RESPONSES, **sse.stream_response("Anthropic message")},
    summary="Create a message (Anthropic Messages API)",
    openapi_extra=request_body(MessagesRequest),
)
async def messages(raw: Request) -> Any:
    body = await read_body(raw, MessagesRequest)
    call = call_of(raw)
    request = convert.generation_request(body)
    generation = await call.pipeline.generate(
        call.token, request, call.arrival, stream=bool(body.stream)
    )
    where = where_headers(generation.target, generation.spilled)
    mid = _id()
    if not body.stream:
        whole = await collect_all(generation.events)
        content: list[TextOut | ToolUseOut] = [TextOut(text=whole.text)] if whole.text else []
        content += [
            ToolUseOut(id=c.id, name=c.name, input=convert.tool_input(c.arguments))
            for c in whole.tool_calls
        ]
        usage = whole.done.usage
        reason = convert.stop_reason(whole.done.reason, whole.done.stop_sequence)
        message = MessageOut(
            id=mid,
            model=body.model,
            content=content,
            stop_reason=reason,
            stop_sequence=whole.done.stop_sequence if reason == "stop_sequence" else None,
            usage=UsageOut(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens),
        )
        return json_response(message, where)
    start: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": body.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": estimate_prompt_tokens(request), "output_tokens": 0},
    }
    return StreamingResponse(
        _stream(generation.events, start),
        media_type="text/event-stream",
        headers={**sse.HEADERS, **where},
    )


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


async def _stream(
    events: AsyncGenerator[GenerationEvent, None], start: dict[str, Any]
) -> AsyncIterator[bytes]:
    """Anthropic's event sequence: message_start, per content block a start, deltas and a
    stop, then message_delta (stop reason, usage) and message_stop."""
    index, open_kind, tool_index = -1, "", -1
    try:
        yield _event("message_start", {"message": start})
        async for event in events:
            if isinstance(event, Finished):
                if open_kind:
                    yield _event("content_block_stop", {"index": index})
                usage = {
                    "input_tokens": event.usage.prompt_tokens,
                    "output_tokens": event.usage.completion_tokens,
                }
                reason = convert.stop_reason(event.reason, event.stop_sequence)
                stop = event.stop_sequence if reason == "stop_sequence" else None
                end = {"stop_reason": reason, "stop_sequence": stop}
                yield _event("message_delta", {"delta": end, "usage": usage})
                yield _event("message_stop", {})
                return
            if isinstance(event, TextDelta):
                if open_kind != "text":
                    if open_kind:
                        yield _event("content_block_stop", {"index": index})
                    index, open_kind = index + 1, "text"
                    text_block = {"type": "text", "text": ""}
                    yield _event(
                        "content_block_start", {"index": index, "content_block": text_block}
                    )
                piece = {"type": "text_delta", "text": event.text}
                yield _event("content_block_delta", {"index": index, "delta": piece})
                continue
            if open_kind != "tool_use" or event.index != tool_index:
                if open_kind:
                    yield _event("content_block_stop", {"index": index})
                index, open_kind, tool_index = index + 1, "tool_use", event.index
                call = {"type": "tool_use", "id": event.id or "", "name": event.name or ""}
                yield _event(
                    "content_block_start", {"index": index, "content_block": {**call, "input": {}}}
                )
            if event.arguments:
                json_piece = {"type": "input_json_delta", "partial_json": event.arguments}
                yield _event("content_block_delta", {"index": index, "delta": json_piece})
    except CloudletError as exc:
        yield _event("error", {"error": anthropic_error_body(exc)["error"]})
    except Exception:
        sse.log.exception("stream failed")
        error = {"type": "api_error", "message": "The server had an error while streaming."}
        yield _event("error", {"error": error})
    finally:
        await events.aclose()


@router.post(
    "/v1/messages/count_tokens",
    response_model=TokenCount,
    responses=ERROR_RESPONSES,
    summary="Count a message's input tokens (exact on local models)",
)
async def count_tokens(body: CountTokensRequest, pipeline: PipelineDep, token: TokenDep) -> Any:
    """A local model counts with its own tokenizer and chat template, the prompt a
    ``messages.create`` of the same input evaluates; a remote one is estimated (~4
    characters a token, the tools' JSON included)."""
    request = convert.count_request(body)
    tokens = await exact_tokens(pipeline, token, request)
    if tokens is not None:
        return TokenCount(input_tokens=len(tokens))
    tools = sum(estimate_tokens(json.dumps(t.as_wire_dict())) for t in request.tools)
    return TokenCount(input_tokens=estimate_prompt_tokens(request) + tools)
