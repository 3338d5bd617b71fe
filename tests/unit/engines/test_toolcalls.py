"""Tool calls as text: prompts for templates without tools, and the streaming call parser."""

from __future__ import annotations

import json

import pytest

from cloudlet.domain import (
    ChatMessage,
    GenerationRequest,
    ModelId,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
)
from cloudlet.engines.toolcalls import ToolCallParser, call_schema, template_input

WEATHER = Tool(
    "get_weather",
    "Weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = Tool("get_time", "", None)
CALLS = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa\\"ris}"}}\n</tool_call>\n'
    '<tool_call>\n{"name":"get_time","arguments":{}}\n</tool_call>'
)


def parse(pieces: list[str]) -> list[TextDelta | ToolCallDelta]:
    parser = ToolCallParser()
    out: list[TextDelta | ToolCallDelta] = []
    for piece in pieces:
        out += parser.feed(TextDelta(piece))
    return out + parser.flush()


def joined(events: list[TextDelta | ToolCallDelta]) -> tuple[str, list[tuple[str, str]]]:
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    calls: dict[int, list[str]] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            call = calls.setdefault(e.index, ["", ""])
            call[0] = e.name or call[0]
            call[1] += e.arguments
    return text, [(name, args) for name, args in calls.values()]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_calls_parse_whatever_the_piece_size(size: int) -> None:
    events = parse([CALLS[i : i + size] for i in range(0, len(CALLS), size)])
    text, calls = joined(events)
    assert text == ""
    assert [name for name, _ in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0][1]) == {"city": 'Pa"ris}'}
    assert json.loads(calls[1][1]) == {}
    firsts = [e for e in events if isinstance(e, ToolCallDelta) and e.id]
    assert len(firsts) == 2 and firsts[0].id != firsts[1].id  # id and name come once each
    assert all(e.name for e in firsts)


def test_text_passes_through_and_a_call_after_it_is_found() -> None:
    source = "Let me check < that. " + CALLS
    text, calls = joined(parse([source[i : i + 3] for i in range(0, len(source), 3)]))
    assert text == "Let me check < that. "
    assert [name for name, _ in calls] == ["get_weather", "get_time"]


def test_text_that_only_looks_like_the_start_of_a_call_is_released_at_the_end() -> None:
    text, calls = joined(parse(["Use the <tool", "_ca"]))
    assert (text, calls) == ("Use the <tool_ca", [])


def request(choice: ToolChoice, messages: tuple[ChatMessage, ...]) -> GenerationRequest:
    return GenerationRequest(
        model=ModelId("m"), messages=messages, tools=(WEATHER, TIME), tool_choice=choice
    )


def test_template_without_tools_gets_them_in_the_system_message_and_history_as_text() -> None:
    history = (
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city":"X"}'),)),
        ChatMessage("tool", "sunny", tool_call_id="c1"),
    )
    messages, tools = template_input(request(ToolChoice("auto"), history), False)
    assert tools is None
    assert messages[0]["content"].startswith("Be brief.\n\nYou may call these functions")
    assert '"name": "get_weather"' in messages[0]["content"]
    assert "plain text" in messages[0]["content"]
    assert messages[2]["content"] == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city":"X"}}\n</tool_call>'
    )
    assert messages[3] == {"role": "user", "content": "<tool_response>\nsunny\n</tool_response>"}


def test_named_choice_offers_only_that_function_and_none_offers_nothing() -> None:
    hi = (ChatMessage("user", "hi"),)
    messages, _ = template_input(request(ToolChoice("function", "get_time"), hi), False)
    assert "get_time" in messages[0]["content"] and "get_weather" not in messages[0]["content"]
    messages, _ = template_input(request(ToolChoice("none"), hi), False)
    assert messages == [{"role": "user", "content": "hi"}]


def test_template_with_tools_gets_them_and_calls_as_objects() -> None:
    history = (
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "get_weather", '{"city":"X"}'),)),
    )
    messages, tools = template_input(request(ToolChoice("required"), history), True)
    assert tools is not None and [t["function"]["name"] for t in tools] == [
        "get_weather",
        "get_time",
    ]
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == {"city": "X"}


def test_call_schema_pins_the_name_and_defaults_empty_parameters() -> None:
    schema = call_schema((WEATHER, TIME))
    names = [s["properties"]["name"]["const"] for s in schema["anyOf"]]
    assert names == ["get_weather", "get_time"]
    assert schema["anyOf"][1]["properties"]["arguments"]["type"] == "object"
