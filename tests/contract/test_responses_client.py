"""Contract: the official `openai` client's Responses API against a real `cloudlet serve`.

Streamed events are validated one by one against the client's published event types.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai import OpenAI
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from tests.conftest import Server

pytestmark = pytest.mark.slow
CHAT = "smollm2"
EVENT = TypeAdapter(ResponseStreamEvent)
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key="not-needed-on-loopback", max_retries=0)


def test_text_response(client: OpenAI) -> None:
    r = client.responses.create(
        model=CHAT, instructions="You are terse.", input="Say hello.", max_output_tokens=16
    )
    assert r.object == "response" and r.id.startswith("resp_") and r.model == CHAT
    assert r.status in ("completed", "incomplete")
    assert r.output_text
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage is not None and 0 < r.usage.output_tokens <= 16
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    if r.status == "incomplete":
        assert r.incomplete_details is not None
        assert r.incomplete_details.reason == "max_output_tokens"


def test_streaming_events_follow_the_published_types(client: OpenAI) -> None:
    events = list(
        client.responses.create(
            model=CHAT, input="Count to five.", max_output_tokens=12, stream=True
        )
    )
    for event in events:
        EVENT.validate_python(event.model_dump())
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds.index("response.output_item.added") < kinds.index("response.output_text.delta")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    (done,) = [e for e in events if e.type == "response.output_text.done"]
    assert done.text == text
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == text and final.usage is not None


@pytest.mark.parametrize("stream", [False, True])
def test_function_tool_and_follow_up_with_previous_response_id(
    client: OpenAI, stream: bool
) -> None:
    kwargs: dict[str, Any] = dict(
        model=CHAT,
        input="What's the weather in Paris for the next 3 days?",
        tools=[WEATHER],
        tool_choice="required",
        max_output_tokens=200,
        temperature=0,  # greedy: sampled, the small model may ramble in a string to the limit
    )
    if stream:
        events = list(client.responses.create(**kwargs, stream=True))
        for event in events:
            EVENT.validate_python(event.model_dump())
        kinds = [e.type for e in events]
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
        first = events[-1].response  # type: ignore[union-attr]
    else:
        first = client.responses.create(**kwargs)
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls
    for call in calls:
        assert call.name == "get_weather" and call.call_id
        jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    follow_up = client.responses.create(
        model=CHAT,
        previous_response_id=first.id,
        input=[
            {"type": "function_call_output", "call_id": c.call_id, "output": '{"temp": 21}'}
            for c in calls
        ],
        max_output_tokens=24,
    )
    assert follow_up.previous_response_id == first.id
    assert follow_up.output_text
    # The follow-up saw the whole conversation: its prompt holds the first question (asked
    # alone below, without the tools' descriptions) and the calls and their outputs besides.
    # (Compared with the question alone, not with the first prompt: that one also describes
    # the tools, which the follow-up does not carry, and the model decides how many calls.)
    alone = client.responses.create(model=CHAT, input=kwargs["input"], max_output_tokens=1)
    assert follow_up.usage is not None and alone.usage is not None
    assert follow_up.usage.input_tokens > alone.usage.input_tokens


def test_json_schema_text_format(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            # Bounded, so the grammar ends the object within max_output_tokens: an unbounded
            # string lets a 135M model loop in it until the limit cuts the JSON off.
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
        },
        "required": ["name", "age"],
    }
    r = client.responses.create(
        model=CHAT,
        input="Invent a person.",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema}},
        max_output_tokens=60,
        temperature=0,
    )
    jsonschema.validate(json.loads(r.output_text), schema)


def test_unknown_previous_response_is_a_clear_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="resp_nope") as info:
        client.responses.create(model=CHAT, input="hi", previous_response_id="resp_nope")
    assert info.value.code == "response_not_found"


def test_store_false_keeps_nothing(client: OpenAI) -> None:
    r = client.responses.create(model=CHAT, input="hi", max_output_tokens=4, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=CHAT, input="more", previous_response_id=r.id)


def test_other_tool_types_are_refused(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=CHAT, input="hi", tools=[{"type": "web_search"}])  # type: ignore[list-item]
