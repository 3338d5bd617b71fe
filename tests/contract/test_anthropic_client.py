"""Contract: the official `anthropic` client against a real `cloudlet serve` (/v1/messages).

Every streamed event is validated against the client's own published event types.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest
from anthropic import Anthropic
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from tests.conftest import Server

pytestmark = pytest.mark.slow
CHAT = "smollm2"
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}
EVENT = TypeAdapter(RawMessageStreamEvent)


@pytest.fixture(scope="module")
def client(server: Server) -> Anthropic:
    return Anthropic(base_url=server.base_url, api_key="not-needed-on-loopback", max_retries=0)


def test_message_non_streaming(client: Anthropic) -> None:
    m = client.messages.create(
        model=CHAT,
        max_tokens=16,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello."}],
    )
    assert m.type == "message" and m.role == "assistant" and m.model == CHAT
    assert m.id.startswith("msg_")
    assert m.content and m.content[0].type == "text" and m.content[0].text
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.usage.input_tokens > 5 and 0 < m.usage.output_tokens <= 16


def test_message_streaming_events_follow_the_published_types(client: Anthropic) -> None:
    with client.messages.stream(
        model=CHAT, max_tokens=12, messages=[{"role": "user", "content": "Count to five."}]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    raw = [e for e in events if e.type in EVENT_TYPES]
    kinds = [e.type for e in raw]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1] == "content_block_start" and "content_block_delta" in kinds
    assert kinds[-3] == "content_block_stop"
    for event in raw:
        EVENT.validate_python(event.model_dump())
    text = "".join(e.delta.text for e in raw if e.type == "content_block_delta")  # type: ignore[union-attr]
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.usage.output_tokens <= 12 and final.usage.input_tokens > 5
    assert final.stop_reason in ("end_turn", "max_tokens")


EVENT_TYPES = {
    "message_start",
    "message_delta",
    "message_stop",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
}


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use(client: Anthropic, stream: bool) -> None:
    kwargs: dict[str, Any] = dict(
        model=CHAT,
        max_tokens=200,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        # Greedy: sampled, the small model may ramble in a string until max_tokens. (This
        # client has no temperature argument any more; the API still takes the field.)
        extra_body={"temperature": 0},
    )
    if stream:
        with client.messages.stream(**kwargs) as s:
            for event in s:
                if event.type in EVENT_TYPES:
                    EVENT.validate_python(event.model_dump())
            m = s.get_final_message()
    else:
        m = client.messages.create(**kwargs)
    assert m.stop_reason == "tool_use"
    uses = [b for b in m.content if b.type == "tool_use"]
    assert uses
    for use in uses:
        assert use.name == "get_weather" and use.id
        jsonschema.validate(use.input, WEATHER["input_schema"])


def test_tool_result_round_trip(client: Anthropic) -> None:
    m = client.messages.create(
        model=CHAT,
        max_tokens=30,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=[
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris", "unit": "celsius"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"}],
            },
        ],
    )
    assert m.content[0].type == "text" and m.stop_reason in ("end_turn", "max_tokens")


def test_named_tool_and_stop_sequences(client: Anthropic) -> None:
    m = client.messages.create(
        model=CHAT,
        max_tokens=200,
        tools=[WEATHER, {**WEATHER, "name": "other"}],
        tool_choice={"type": "tool", "name": "other"},
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    assert [b.name for b in m.content if b.type == "tool_use"] == ["other"]  # type: ignore[union-attr]
    m = client.messages.create(
        model=CHAT,
        max_tokens=60,
        stop_sequences=["5"],
        extra_body={"temperature": 0},  # this client's create() has no temperature argument
        messages=[{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
    )
    assert "5" not in m.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_sequence_that_ends_the_text_is_named(client: Anthropic, stream: bool) -> None:
    ask: dict[str, Any] = dict(
        model=CHAT,
        max_tokens=40,
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "List five fruits, separated by commas."}],
    )
    client.messages.create(**ask)  # now the prompt is cached: the next two run alike
    full = client.messages.create(**ask)
    assert full.stop_reason in ("end_turn", "max_tokens") and full.stop_sequence is None
    text = full.content[0].text  # type: ignore[union-attr]
    # A piece of the answer that occurs once, nearest its middle.
    starts = sorted(range(1, len(text) - 3), key=lambda i: abs(i - len(text) // 2))
    stop = next((text[i : i + 3] for i in starts if text.count(text[i : i + 3]) == 1), "")
    assert len(stop) == 3, text
    sequences = ["@@never@@", stop]
    if stream:
        with client.messages.stream(**ask, stop_sequences=sequences) as events:
            raw = [e for e in events if e.type in EVENT_TYPES]
            for event in raw:
                EVENT.validate_python(event.model_dump())
            m = events.get_final_message()
        delta = next(e for e in raw if e.type == "message_delta")
        assert delta.delta.stop_sequence == stop  # type: ignore[union-attr]
    else:
        m = client.messages.create(**ask, stop_sequences=sequences)
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", stop)
    assert m.content[0].text == text[: text.index(stop)]  # type: ignore[union-attr]


def test_count_tokens(client: Anthropic) -> None:
    short = client.messages.count_tokens(model=CHAT, messages=[{"role": "user", "content": "Hi"}])
    longer = client.messages.count_tokens(
        model=CHAT,
        system="You are a helpful assistant.",
        tools=[WEATHER],
        messages=[{"role": "user", "content": "Tell me about the weather in Paris " * 5}],
    )
    assert 0 < short.input_tokens < longer.input_tokens


def test_errors_take_anthropics_shape(client: Anthropic, server: Server) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(
            model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["type"] == "error"  # type: ignore[index]
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    r = httpx.post(
        server.base_url + "/v1/messages",
        json={"model": CHAT, "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    assert json.loads(r.text) == body
