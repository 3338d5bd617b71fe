"""The OpenAI wire as remote engines (and engine workers) speak it: tools out, tool calls in."""

from __future__ import annotations

import json

from cloudlet.domain import (
    ChatMessage,
    Finished,
    GenerationRequest,
    ModelId,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from cloudlet.engines.openai_reply import StreamParser
from cloudlet.engines.openai_wire import generation_body

WEATHER = Tool("get_weather", "Weather", {"type": "object", "properties": {}}, strict=True)


def test_body_carries_tools_choice_history_and_logprobs() -> None:
    request = GenerationRequest(
        model=ModelId("m"),
        messages=(
            ChatMessage("user", "Weather?"),
            ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "get_weather", "{}"),)),
            ChatMessage("tool", "sunny", tool_call_id="c1"),
        ),
        tools=(WEATHER,),
        tool_choice=ToolChoice("function", "get_weather"),
        parallel_tool_calls=False,
        logprobs=True,
        top_logprobs=2,
    )
    body = generation_body(request, "up")
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ],
    }
    assert body["messages"][2] == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}


def test_body_without_tools_has_no_tool_fields() -> None:
    body = generation_body(
        GenerationRequest(model=ModelId("m"), messages=(ChatMessage("user", "hi"),)), "up"
    )
    assert not {"tools", "tool_choice", "parallel_tool_calls", "logprobs"} & body.keys()


def sse(chunk: object) -> bytes:
    return b"data: " + json.dumps(chunk).encode()


def test_parser_turns_tool_call_deltas_into_events() -> None:
    parser = StreamParser("up", 5)
    first = {"index": 0, "id": "c9", "type": "function"}
    first["function"] = {"name": "get_weather", "arguments": ""}
    lines = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]},
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    events = [e for line in lines for e in parser.feed(sse(line))]
    assert events == [
        ToolCallDelta(0, "", "c9", "get_weather"),
        ToolCallDelta(0, '{"a"'),
        ToolCallDelta(0, ": 1}"),
    ]
    parser.feed(b"data: [DONE]")
    assert parser.finish() == Finished("tool_calls", Usage(5, 3))


def test_parser_reads_logprobs_with_the_text() -> None:
    parser = StreamParser("up", 5)
    top = [{"token": "Hi", "logprob": -0.1}, {"token": "Yo", "logprob": -2.5}]
    content = [{"token": "Hi", "logprob": -0.1, "top_logprobs": top}]
    chunk = {
        "choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": {"content": content}}]
    }
    (event,) = parser.feed(sse(chunk))
    assert isinstance(event, TextDelta) and event.text == "Hi"
    assert event.logprobs[0].logprob == -0.1
    assert event.logprobs[0].top == (("Hi", -0.1), ("Yo", -2.5))
