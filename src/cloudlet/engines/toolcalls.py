"""Tool calls on engines that generate plain text (the embedded llama.cpp engine).

The model writes each call as Hermes/Qwen do, which the grammar of
:func:`~cloudlet.engines.llamacpp_common.tool_grammar` enforces::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

Here: the messages a chat template sees (tools described in the system message when the
template does not know tools itself, earlier calls and results written in the same format), the
JSON schema of one call, and :class:`ToolCallParser`, which turns the generated text back into
:class:`~cloudlet.domain.ToolCallDelta` events while it streams (id and name once, then the
arguments in pieces; the batched engine's stream runs one per choice).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from cloudlet.domain import (
    ChatMessage,
    GenerationRequest,
    TextDelta,
    Tool,
    ToolCallDelta,
)

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
# The grammar writes name before arguments; spaces are optional around the punctuation.
_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def wants_tools(request: GenerationRequest) -> bool:
    """Whether the model is offered tools (``tool_choice: none`` offers none)."""
    return bool(request.tools) and request.tool_choice.mode != "none"


def offered_tools(request: GenerationRequest) -> tuple[Tool, ...]:
    """The tools the model may call: all of them, or the one ``tool_choice`` names."""
    if not wants_tools(request):
        return ()
    if request.tool_choice.mode == "function":
        return tuple(t for t in request.tools if t.name == request.tool_choice.name)
    return request.tools


def parameters_schema(tool: Tool) -> dict[str, Any]:
    return tool.parameters if tool.parameters else _EMPTY_PARAMETERS


def call_schema(tools: tuple[Tool, ...]) -> dict[str, Any]:
    """The JSON schema of one call to any of ``tools``."""
    shapes = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": parameters_schema(t)},
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return shapes[0] if len(shapes) == 1 else {"anyOf": shapes}


def _instructions(request: GenerationRequest) -> str:
    tools = "\n".join(json.dumps(t.as_wire_dict()["function"]) for t in offered_tools(request))
    how = (
        "To call a function, reply with its name and arguments in this format:\n"
        f'{OPEN}\n{{"name": "function name", "arguments": {{...}}}}\n{CLOSE}'
    )
    if request.tool_choice.mode == "auto":
        how += "\nIf no function fits, answer in plain text."
    return f"You may call these functions:\n<tools>\n{tools}\n</tools>\n{how}"


def _as_text(message: ChatMessage) -> dict[str, Any]:
    """A message for a template that knows no tools: calls and results written as text."""
    if message.role == "tool":
        body = f"<tool_response>\n{message.content}\n</tool_response>"
        return {"role": "user", "content": body}
    out = message.as_template_dict()
    if message.tool_calls:
        calls = [
            f'{OPEN}\n{{"name": {json.dumps(c.name)}, "arguments": {c.arguments}}}\n{CLOSE}'
            for c in message.tool_calls
        ]
        out["content"] = "\n".join(filter(None, [message.content, *calls]))
    return out


def _for_tool_template(message: ChatMessage) -> dict[str, Any]:
    """A message for a template that knows tools (arguments as objects, as such templates
    write them with ``tojson``)."""
    out = message.as_template_dict()
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": _loads(c.arguments)},
            }
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def template_input(
    request: GenerationRequest, template_knows_tools: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages (and tools, for a template that renders them) to render a chat with."""
    assert request.messages is not None
    if template_knows_tools:
        tools = [t.as_wire_dict() for t in offered_tools(request)] or None
        return [_for_tool_template(m) for m in request.messages], tools
    messages = [_as_text(m) for m in request.messages]
    if wants_tools(request):
        text = _instructions(request)
        if messages and messages[0]["role"] == "system":
            messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}
        else:
            messages.insert(0, {"role": "system", "content": text})
    return messages, None


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class ToolCallParser:
    """Generated text → text and tool-call pieces, incrementally.

    Text passes on unchanged until ``<tool_call>`` opens a call (text that may be the start
    of one is held back until it is decided); calls, and the whitespace between them, become
    :class:`ToolCallDelta`\\ s.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._mode = "text"  # text | between | header | args | tail
        self._index = -1
        self._depth = 0
        self._in_string = False
        self._escaped = False

    @property
    def calls(self) -> int:
        return self._index + 1

    def feed(self, delta: TextDelta) -> list[TextDelta | ToolCallDelta]:
        if self._mode == "text" and not self._buf and "<" not in delta.text:
            return [delta]  # the common case: plain text, logprobs and all
        self._buf += delta.text
        out: list[TextDelta | ToolCallDelta] = []
        while self._step(out):
            pass
        return out

    def flush(self) -> list[TextDelta | ToolCallDelta]:
        """At the end: held-back text is text; a call cut off (``length``) stays as it is."""
        buf, self._buf = self._buf, ""
        if self._mode == "text" and buf:
            return [TextDelta(buf)]
        return []

    def _step(self, out: list[TextDelta | ToolCallDelta]) -> bool:
        """Consume what can be decided; True when it made progress and may make more."""
        buf = self._buf
        if self._mode == "text":
            at = buf.find(OPEN)
            if at >= 0:
                if at:
                    out.append(TextDelta(buf[:at]))
                self._buf, self._mode = buf[at + len(OPEN) :], "header"
                return True
            keep = _open_prefix(buf)
            if len(buf) > keep:
                out.append(TextDelta(buf[: len(buf) - keep]))
            self._buf = buf[len(buf) - keep :]
            return False
        if self._mode == "between":
            rest = buf.lstrip()
            if rest.startswith(OPEN):
                self._buf, self._mode = rest[len(OPEN) :], "header"
                return True
            if OPEN.startswith(rest):
                self._buf = rest
                return False
            self._buf, self._mode = rest, "text"  # text after the calls
            return True
        if self._mode == "header":
            match = _HEADER.match(buf)
            if match is None:
                return False
            self._index += 1
            name = json.loads(f'"{match.group(1)}"')
            out.append(ToolCallDelta(self._index, "", new_call_id(), name))
            self._buf, self._mode = buf[match.end() :], "args"
            self._depth, self._in_string, self._escaped = 0, False, False
            return True
        if self._mode == "args":
            end = self._scan(buf)
            piece = buf if end is None else buf[:end]
            if piece:
                out.append(ToolCallDelta(self._index, piece))
            if end is None:
                self._buf = ""
                return False
            self._buf, self._mode = buf[end:], "tail"
            return True
        # tail: the call object's closing brace and the closing tag
        at = buf.find(CLOSE)
        if at < 0:
            return False
        self._buf, self._mode = buf[at + len(CLOSE) :], "between"
        return True

    def _scan(self, text: str) -> int | None:
        """Where the arguments' JSON value ends in ``text`` (exclusive), if it does."""
        for i, ch in enumerate(text):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
                    if self._depth == 0:
                        return i + 1
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return i + 1
                if self._depth < 0:  # a bare scalar ended at the call's closing brace
                    return i
        return None


def _open_prefix(text: str) -> int:
    """The length of the longest end of ``text`` that may begin ``<tool_call>``."""
    for k in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if text.endswith(OPEN[:k]):
            return k
    return 0
