"""Contract: token counts on a local model are exact, against a real `cloudlet serve`.

``/v1/messages/count_tokens`` (the `anthropic` client) and ``/tokenize`` count with the
model's own tokenizer and chat template, tools described as for generation: each count equals
the prompt tokens the usage of a real generation of the same input reports.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from anthropic import Anthropic
from openai import OpenAI

from tests.conftest import Server

pytestmark = pytest.mark.slow
CHAT = "smollm2"
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
    },
}
CONVERSATIONS: list[dict[str, Any]] = [
    {"messages": [{"role": "user", "content": "Hi"}]},
    {
        "system": "You are terse. Ünïcödé and emoji 🌧 count too.",
        "messages": [
            {"role": "user", "content": "Tell me about rain in Bergen."},
            {"role": "assistant", "content": "It rains a lot."},
            {"role": "user", "content": "How much, roughly?"},
        ],
    },
    {"tools": [WEATHER], "messages": [{"role": "user", "content": "Weather in Oslo?"}]},
    {
        "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "4 degrees, drizzle"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
    },
]


@pytest.fixture(scope="module")
def anthropic_client(server: Server) -> Anthropic:
    return Anthropic(base_url=server.base_url, api_key="not-needed-on-loopback", max_retries=0)


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=range(len(CONVERSATIONS)))
def test_count_tokens_is_the_prompt_a_message_evaluates(
    anthropic_client: Anthropic, conversation: dict[str, Any]
) -> None:
    counted = anthropic_client.messages.count_tokens(model=CHAT, **conversation)
    created = anthropic_client.messages.create(model=CHAT, max_tokens=4, **conversation)
    assert counted.input_tokens == created.usage.input_tokens


def test_tokenize_is_the_prompt_a_chat_completion_evaluates(server: Server) -> None:
    client = OpenAI(base_url=server.v1, api_key="not-needed-on-loopback", max_retries=0)
    tools: Any = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]},
        }
    ]
    messages: Any = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Weather in Lima?"},
    ]
    r = client.chat.completions.create(model=CHAT, messages=messages, tools=tools, max_tokens=4)
    body = {"model": CHAT, "messages": messages, "tools": tools}
    tokenized = httpx.post(server.base_url + "/tokenize", json=body, timeout=30).json()
    assert r.usage is not None
    assert tokenized["count"] == len(tokenized["tokens"]) == r.usage.prompt_tokens
    assert tokenized["max_model_len"] == client.models.retrieve(CHAT).model_extra["context_length"]  # type: ignore[index]
    # a raw prompt is tokenized as /v1/completions evaluates it
    done = client.completions.create(model=CHAT, prompt="Once upon a time", max_tokens=2)
    raw = httpx.post(
        server.base_url + "/tokenize", json={"model": CHAT, "prompt": "Once upon a time"}
    ).json()
    assert done.usage is not None and raw["count"] == done.usage.prompt_tokens


def test_tokenize_needs_one_of_messages_or_prompt(server: Server) -> None:
    r = httpx.post(server.base_url + "/tokenize", json={"model": CHAT})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    unknown = httpx.post(server.base_url + "/tokenize", json={"model": "nope", "prompt": "x"})
    assert unknown.status_code == 404
