"""OpenAI Responses ⇄ the domain request: input items to chat messages, answers to output
items, and conversations to and from the JSON the ledger stores for ``previous_response_id``.

``instructions`` become a system message for this request only (they are not carried into a
follow-up, as on OpenAI); ``function_call`` items become the assistant's tool calls and
``function_call_output`` items ``tool`` messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from cloudlet.api import convert
from cloudlet.api.responses_schemas import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    InputImage,
    InputItem,
    OutputFunctionCall,
    OutputMessage,
    OutputText,
    ResponsesRequest,
    TextFormatJsonObject,
    TextFormatJsonSchema,
)
from cloudlet.api.schemas import NamedFunction, NamedToolChoice
from cloudlet.domain import (
    ChatMessage,
    GenerationRequest,
    ModelId,
    ResponseFormat,
    SamplingParams,
    Tool,
    ToolCall,
)
from cloudlet.errors import InvalidRequest


def item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _message(role: str, content: str | list[Any]) -> ChatMessage:
    role = "system" if role == "developer" else role
    if isinstance(content, str):
        return ChatMessage(role, content)
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, InputImage):
            if not part.image_url:
                raise InvalidRequest(
                    "input_image needs an image_url (file ids are not supported)", param="input"
                )
            parts.append({"type": "image_url", "image_url": {"url": part.image_url}})
        else:
            texts.append(part.text)
            parts.append({"type": "text", "text": part.text})
    has_image = any(p["type"] == "image_url" for p in parts)
    return ChatMessage(role, "".join(texts), parts=tuple(parts) if has_image else ())


def input_messages(items: str | Sequence[InputItem]) -> list[ChatMessage]:
    if isinstance(items, str):
        return [ChatMessage("user", items)]
    out: list[ChatMessage] = []
    for item in items:
        if isinstance(item, FunctionCallItem):
            call = ToolCall(item.call_id, item.name, item.arguments)
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and not last.parts:
                out[-1] = ChatMessage(
                    "assistant", last.content, tool_calls=(*last.tool_calls, call)
                )
            else:
                out.append(ChatMessage("assistant", "", tool_calls=(call,)))
        elif isinstance(item, FunctionCallOutputItem):
            out.append(ChatMessage("tool", item.output, tool_call_id=item.call_id))
        else:
            out.append(_message(item.role, item.content))
    return out


def _format(body: ResponsesRequest) -> ResponseFormat:
    fmt = body.text.format if body.text is not None else None
    if isinstance(fmt, TextFormatJsonSchema):
        return ResponseFormat("json_schema", fmt.schema_ or None)
    if isinstance(fmt, TextFormatJsonObject):
        return ResponseFormat("json_object")
    return ResponseFormat()


def tools(body: ResponsesRequest) -> tuple[Tool, ...]:
    out = tuple(Tool(t.name, t.description or "", t.parameters, t.strict) for t in body.tools or ())
    if len({t.name for t in out}) != len(out):
        raise InvalidRequest("tools: each function needs a distinct name", param="tools")
    return out


def generation_request(
    body: ResponsesRequest, history: Sequence[ChatMessage]
) -> tuple[GenerationRequest, list[ChatMessage]]:
    """The domain request, and the conversation it continues (history + this input), which
    is what a stored response keeps (without the instructions)."""
    conversation = [*history, *input_messages(body.input)]
    system = [ChatMessage("system", body.instructions)] if body.instructions else []
    offered = tools(body)
    choice = body.tool_choice
    wire_choice = (
        NamedToolChoice(type="function", function=NamedFunction(name=choice.name))
        if isinstance(choice, FunctionChoice)
        else choice
    )
    defaults = SamplingParams()
    request = GenerationRequest(
        model=ModelId(body.model),
        messages=tuple(system + conversation),
        max_tokens=body.max_output_tokens,
        sampling=SamplingParams(
            temperature=defaults.temperature if body.temperature is None else body.temperature,
            top_p=defaults.top_p if body.top_p is None else body.top_p,
        ),
        response_format=_format(body),
        tools=offered,
        tool_choice=convert.tool_choice(wire_choice, offered),
        parallel_tool_calls=body.parallel_tool_calls is not False,
    )
    return request, conversation


def output_items(text: str, calls: Sequence[ToolCall]) -> list[OutputMessage | OutputFunctionCall]:
    out: list[OutputMessage | OutputFunctionCall] = []
    if text or not calls:
        out.append(OutputMessage(id=item_id("msg"), content=[OutputText(text=text)]))
    out += [
        OutputFunctionCall(id=item_id("fc"), call_id=c.id, name=c.name, arguments=c.arguments)
        for c in calls
    ]
    return out


def answer_message(text: str, calls: Sequence[ToolCall]) -> ChatMessage:
    return ChatMessage("assistant", text, tool_calls=tuple(calls))


# --- conversations as stored JSON -------------------------------------------------------------


def to_json(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return [
        {
            "role": m.role,
            "content": m.content,
            "name": m.name,
            "tool_calls": [[c.id, c.name, c.arguments] for c in m.tool_calls],
            "tool_call_id": m.tool_call_id,
            "parts": list(m.parts),
        }
        for m in messages
    ]


def from_json(rows: Sequence[dict[str, Any]]) -> list[ChatMessage]:
    return [
        ChatMessage(
            role=row["role"],
            content=row["content"],
            name=row.get("name"),
            tool_calls=tuple(ToolCall(*c) for c in row.get("tool_calls") or ()),
            tool_call_id=row.get("tool_call_id"),
            parts=tuple(row.get("parts") or ()),
        )
        for row in rows
    ]
