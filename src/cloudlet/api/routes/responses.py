"""POST /v1/responses (the OpenAI Responses API).

A translation onto the same pipeline as chat completions (keys, routing, budgets, ledger).
With ``store`` (the default) the conversation is kept in the ledger's database so that a
follow-up can name it as ``previous_response_id``; without a ledger nothing is stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from cloudlet.api import responses_convert as convert
from cloudlet.api import sse
from cloudlet.api.bodies import read_body, request_body
from cloudlet.api.errors import ERROR_RESPONSES, error_body
from cloudlet.api.responses_schemas import (
    IncompleteDetails,
    OutputFunctionCall,
    OutputMessage,
    OutputText,
    ResponseObject,
    ResponsesRequest,
    ResponseUsage,
)
from cloudlet.api.routes.chat import json_response, where_headers
from cloudlet.api.routes.deps import PipelineDep, TokenDep, call_of, collect_all
from cloudlet.domain import ChatMessage, Finished, GenerationEvent, TextDelta, ToolCall
from cloudlet.errors import CloudletError, InvalidRequest, ResponseNotFound
from cloudlet.ledger.keys import Tenant
from cloudlet.ledger.responses import ResponseStore

router = APIRouter()
Save = Callable[[ResponseObject, str, list[ToolCall]], Awaitable[None]]


def _store(request: Request) -> ResponseStore | None:
    ledger = getattr(request.app.state, "ledger", None)
    return ledger.responses if ledger is not None else None


@router.post(
    "/v1/responses",
    response_model=ResponseObject,
    responses={**ERROR_RESPONSES, **sse.stream_response("Responses API event")},
    summary="Create a model response (OpenAI Responses API)",
    openapi_extra=request_body(ResponsesRequest),
)
async def create_response(raw: Request) -> Any:
    body = await read_body(raw, ResponsesRequest)
    call = call_of(raw)
    pipeline, token = call.pipeline, call.token
    store = _store(raw)
    tenant = await pipeline.tenant(token)
    history: list[ChatMessage] = []
    if body.previous_response_id is not None:
        if store is None:
            raise InvalidRequest(
                "previous_response_id needs stored responses, and this server has no ledger",
                param="previous_response_id",
            )
        stored = await store.load(tenant, body.previous_response_id)
        if stored is None:
            raise ResponseNotFound(body.previous_response_id)
        history = convert.from_json(stored.conversation)
    request, conversation = convert.generation_request(body, history)
    generation = await pipeline.generate(token, request, call.arrival, stream=bool(body.stream))
    where = where_headers(generation.target, generation.spilled)
    snapshot = _snapshot(body)

    async def save(final: ResponseObject, text: str, calls: list[ToolCall]) -> None:
        if store is not None and body.store:
            answer = convert.answer_message(text, calls)
            await _save(store, tenant, final, [*conversation, answer])

    if not body.stream:
        whole = await collect_all(generation.events)
        final = _finished(snapshot, convert.output_items(whole.text, whole.tool_calls), whole.done)
        await save(final, whole.text, whole.tool_calls)
        return json_response(final, where)
    return StreamingResponse(
        _stream(generation.events, snapshot, save),
        media_type="text/event-stream",
        headers={**sse.HEADERS, **where},
    )


@router.get(
    "/v1/responses/{response_id}",
    response_model=ResponseObject,
    responses=ERROR_RESPONSES,
    summary="Retrieve a stored model response (OpenAI Responses API)",
)
async def retrieve_response(
    response_id: str, raw: Request, pipeline: PipelineDep, token: TokenDep
) -> Any:
    """A response created with ``store``, for the key that created it; for any other key it
    is unknown (the same 404 as an id never used)."""
    store = _store(raw)
    if store is None:
        raise InvalidRequest(
            "retrieving a response needs stored responses, and this server has no ledger"
        )
    stored = await store.load(await pipeline.tenant(token), response_id)
    if stored is None:
        raise ResponseNotFound(response_id, param=None)
    return JSONResponse(stored.response)


async def _save(
    store: ResponseStore, tenant: Tenant, final: ResponseObject, conversation: list[ChatMessage]
) -> None:
    await store.save(
        tenant, final.id, final.model, convert.to_json(conversation), final.model_dump()
    )


def _snapshot(body: ResponsesRequest) -> ResponseObject:
    """The response as it is before any output (``response.created``)."""
    return ResponseObject(
        id=convert.item_id("resp"),
        created_at=int(time.time()),
        status="in_progress",
        model=body.model,
        output=[],
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        previous_response_id=body.previous_response_id,
        store=body.store,
        temperature=body.temperature,
        top_p=body.top_p,
        text={
            "format": (
                body.text.format.model_dump(by_alias=True) if body.text else {"type": "text"}
            )
        },
        tool_choice=body.tool_choice.model_dump()
        if body.tool_choice is not None and not isinstance(body.tool_choice, str)
        else (body.tool_choice or "auto"),
        tools=[t.model_dump(exclude_none=True) for t in body.tools or ()],
        metadata=body.metadata or {},
        user=body.user,
    )


def _finished(
    snapshot: ResponseObject, output: list[OutputMessage | OutputFunctionCall], done: Finished
) -> ResponseObject:
    usage = done.usage
    incomplete = done.reason == "length"
    status = "incomplete" if incomplete else "completed"
    return snapshot.model_copy(
        update={
            "status": status,
            "output": [item.model_copy(update={"status": status}) for item in output],
            "usage": ResponseUsage(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
            ),
            "incomplete_details": IncompleteDetails(reason="max_output_tokens")
            if incomplete
            else None,
        }
    )


class _Events:
    """Numbers the events (``sequence_number``) and frames them as SSE."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **data: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()


async def _stream(
    events: AsyncGenerator[GenerationEvent, None], snapshot: ResponseObject, save: Save
) -> AsyncIterator[bytes]:
    """response.created, response.in_progress, per output item its added / delta / done
    events, then response.completed (or response.incomplete)."""
    emit = _Events()
    output: list[OutputMessage | OutputFunctionCall] = []
    text_parts: list[str] = []
    calls: list[ToolCall] = []
    open_item: OutputMessage | OutputFunctionCall | None = None

    def close() -> list[bytes]:
        nonlocal open_item
        item, open_item = open_item, None
        if item is None:
            return []
        index = len(output)
        done: OutputMessage | OutputFunctionCall
        if isinstance(item, OutputMessage):
            text = "".join(text_parts)
            part = OutputText(text=text)
            done = item.model_copy(update={"status": "completed", "content": [part]})
            out = [
                emit(
                    "response.output_text.done",
                    item_id=item.id,
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                emit(
                    "response.content_part.done",
                    item_id=item.id,
                    output_index=index,
                    content_index=0,
                    part=part.model_dump(),
                ),
            ]
        else:
            done = item.model_copy(update={"status": "completed"})
            calls.append(ToolCall(item.call_id, item.name, item.arguments))
            out = [
                emit(
                    "response.function_call_arguments.done",
                    item_id=item.id,
                    output_index=index,
                    name=item.name,
                    arguments=item.arguments,
                ),
            ]
        output.append(done)
        out.append(emit("response.output_item.done", output_index=index, item=done.model_dump()))
        return out

    try:
        yield emit("response.created", response=snapshot.model_dump())
        yield emit("response.in_progress", response=snapshot.model_dump())
        async for event in events:
            index = len(output)
            if isinstance(event, Finished):
                for frame in close():
                    yield frame
                final = _finished(snapshot, output or convert.output_items("", []), event)
                await save(final, "".join(text_parts), calls)
                kind = (
                    "response.incomplete" if final.status == "incomplete" else "response.completed"
                )
                yield emit(kind, response=final.model_dump())
                return
            if isinstance(event, TextDelta):
                if not isinstance(open_item, OutputMessage):
                    for frame in close():
                        yield frame
                    open_item = OutputMessage(
                        id=convert.item_id("msg"), status="in_progress", content=[]
                    )
                    yield emit(
                        "response.output_item.added",
                        output_index=index,
                        item=open_item.model_dump(),
                    )
                    yield emit(
                        "response.content_part.added",
                        item_id=open_item.id,
                        output_index=index,
                        content_index=0,
                        part=OutputText(text="").model_dump(),
                    )
                text_parts.append(event.text)
                yield emit(
                    "response.output_text.delta",
                    item_id=open_item.id,
                    output_index=index,
                    content_index=0,
                    delta=event.text,
                    logprobs=[],
                )
                continue
            if event.id is not None or not isinstance(open_item, OutputFunctionCall):
                for frame in close():
                    yield frame
                index = len(output)
                open_item = OutputFunctionCall(
                    id=convert.item_id("fc"),
                    call_id=event.id or convert.item_id("call"),
                    name=event.name or "",
                    arguments="",
                    status="in_progress",
                )
                yield emit(
                    "response.output_item.added", output_index=index, item=open_item.model_dump()
                )
            if event.arguments:
                open_item.arguments += event.arguments
                yield emit(
                    "response.function_call_arguments.delta",
                    item_id=open_item.id,
                    output_index=index,
                    delta=event.arguments,
                )
    except CloudletError as exc:
        yield emit("error", **_error(error_body(exc)["error"]))
    except Exception:
        sse.log.exception("stream failed")
        yield emit(
            "error",
            code="server_error",
            message="The server had an error while streaming.",
            param=None,
        )
    finally:
        await events.aclose()


def _error(error: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": error.get("code") or error.get("type"),
        "message": error["message"],
        "param": error.get("param"),
    }
