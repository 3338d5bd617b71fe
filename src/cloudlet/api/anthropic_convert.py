"""Anthropic Messages ⇄ the domain request: the only place that knows both shapes.

``system`` becomes a system message; a user turn's ``tool_result`` blocks become ``tool``
messages (before the turn's own text); an assistant turn's ``tool_use`` blocks become its tool
calls; images become OpenAI ``image_url`` parts (data: URLs for base64), which only engines that
declare vision take.
"""

from __future__ import annotations

import json
from typing import Any

from cloudlet.api.anthropic_schemas import (
    Base64Source,
    CountTokensRequest,
    ImageBlock,
    MessageIn,
    MessagesRequest,
    StopReason,
    TextBlock,
    ToolChoiceIn,
    ToolIn,
    ToolResultBlock,
    ToolUseBlock,
)
from cloudlet.domain import (
    ChatMessage,
    FinishReason,
    GenerationRequest,
    ModelId,
    SamplingParams,
    Tool,
    ToolCall,
    ToolChoice,
)
from cloudlet.errors import InvalidRequest

_STOP_REASONS: dict[FinishReason, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "cancelled": "end_turn",
}


def stop_reason(reason: FinishReason, stop_sequence: str | None = None) -> StopReason:
    """Anthropic's stop reason: ``stop_sequence`` when one of the request's stop sequences
    ended the text (the engine says which), unless the answer called a tool."""
    if stop_sequence is not None and reason == "stop":
        return "stop_sequence"
    return _STOP_REASONS[reason]


def _system(system: str | list[TextBlock] | None) -> tuple[ChatMessage, ...]:
    if system is None:
        return ()
    text = system if isinstance(system, str) else "".join(b.text for b in system)
    return (ChatMessage("system", text),) if text else ()


def _image_part(block: ImageBlock) -> dict[str, Any]:
    source = block.source
    if isinstance(source, Base64Source):
        url = f"data:{source.media_type};base64,{source.data}"
    else:
        url = source.url
    return {"type": "image_url", "image_url": {"url": url}}


def _messages(message: MessageIn) -> list[ChatMessage]:
    if isinstance(message.content, str):
        return [ChatMessage(message.role, message.content)]
    out: list[ChatMessage] = []
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            texts.append(block.text)
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append(_image_part(block))
        elif isinstance(block, ToolResultBlock):
            if message.role != "user":
                raise InvalidRequest("tool_result blocks belong in user messages", param="messages")
            text = block.text()
            content = f"Error: {text}" if block.is_error else text
            out.append(ChatMessage("tool", content, tool_call_id=block.tool_use_id))
        elif isinstance(block, ToolUseBlock):
            if message.role != "assistant":
                raise InvalidRequest(
                    "tool_use blocks belong in assistant messages", param="messages"
                )
            calls.append(ToolCall(block.id, block.name, json.dumps(block.input)))
    has_image = any(p["type"] == "image_url" for p in parts)
    if texts or calls or has_image:
        out.append(
            ChatMessage(
                message.role,
                "".join(texts),
                tool_calls=tuple(calls),
                parts=tuple(parts) if has_image else (),
            )
        )
    return out


def _tools(tools: list[ToolIn] | None) -> tuple[Tool, ...]:
    out = tuple(Tool(t.name, t.description or "", t.input_schema) for t in tools or ())
    if len({t.name for t in out}) != len(out):
        raise InvalidRequest("tools: each tool needs a distinct name", param="tools")
    return out


def _tool_choice(choice: ToolChoiceIn | None, tools: tuple[Tool, ...]) -> ToolChoice:
    if choice is None:
        return ToolChoice("auto" if tools else "none")
    if choice.type != "none" and not tools:
        raise InvalidRequest(f"tool_choice {choice.type!r} needs tools", param="tool_choice")
    if choice.type == "tool":
        if choice.name not in {t.name for t in tools}:
            raise InvalidRequest(
                f"tool_choice names tool {choice.name!r}, which is not among tools",
                param="tool_choice.name",
            )
        return ToolChoice("function", choice.name)
    return ToolChoice({"auto": "auto", "any": "required", "none": "none"}[choice.type])  # type: ignore[arg-type]


def chat_messages(
    system: str | list[TextBlock] | None, messages: list[MessageIn]
) -> tuple[ChatMessage, ...]:
    return _system(system) + tuple(m for message in messages for m in _messages(message))


def generation_request(body: MessagesRequest) -> GenerationRequest:
    tools = _tools(body.tools)
    defaults = SamplingParams()
    return GenerationRequest(
        model=ModelId(body.model),
        messages=chat_messages(body.system, body.messages),
        max_tokens=body.max_tokens,
        stop=tuple(body.stop_sequences or ()),
        sampling=SamplingParams(
            temperature=defaults.temperature if body.temperature is None else body.temperature,
            top_p=defaults.top_p if body.top_p is None else body.top_p,
            top_k=defaults.top_k if body.top_k is None else body.top_k,
        ),
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice, tools),
        parallel_tool_calls=not (body.tool_choice and body.tool_choice.disable_parallel_tool_use),
    )


def count_request(body: CountTokensRequest) -> GenerationRequest:
    """The request whose prompt ``messages.create`` with the same input would evaluate."""
    tools = _tools(body.tools)
    return GenerationRequest(
        model=ModelId(body.model),
        messages=chat_messages(body.system, body.messages),
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice, tools),
    )


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's arguments as the ``input`` object (an engine's malformed JSON is kept as text
    under ``_raw`` rather than lost)."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_value": value}
