"""The Anthropic Messages API in-process: translation onto the domain, stream framing, errors."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from cloudlet.api.anthropic_convert import generation_request, stop_reason
from cloudlet.api.anthropic_schemas import MessagesRequest
from cloudlet.domain import ChatMessage, ToolCall, ToolChoice
from tests.fakes import FakeChatEngine


def test_blocks_become_domain_messages() -> None:
    body = MessagesRequest.model_validate(
        {
            "model": "m",
            "max_tokens": 10,
            "system": [{"type": "text", "text": "Be brief."}],
            "stop_sequences": ["END"],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [
                {"role": "user", "content": "Call f."},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Sure."},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
                        {"type": "text", "text": "Thanks."},
                    ],
                },
            ],
        }
    )
    request = generation_request(body)
    assert request.messages == (
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Call f."),
        ChatMessage("assistant", "Sure.", tool_calls=(ToolCall("t1", "f", '{"a": 1}'),)),
        ChatMessage("tool", "ok", tool_call_id="t1"),
        ChatMessage("user", "Thanks."),
    )
    assert request.tool_choice == ToolChoice("required")
    assert request.parallel_tool_calls is False
    assert request.stop == ("END",) and request.max_tokens == 10


def test_stream_is_anthropics_event_sequence(client: TestClient) -> None:
    body = {
        "model": "fake",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with client.stream("POST", "/v1/messages", json=body) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    names = [line[7:] for line in lines if line.startswith("event: ")]
    datas = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert names == [d["type"] for d in datas]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta")
    assert text == "Hello world!"
    assert datas[-2]["delta"]["stop_reason"] == "end_turn"


def test_errors_in_anthropics_shape_and_token_counts(
    client: TestClient, chat_engine: FakeChatEngine
) -> None:
    r = client.post("/v1/messages", json={"model": "fake", "messages": []})
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = client.post(
        "/v1/messages",
        json={"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    assert (r.status_code, r.json()["error"]["type"]) == (404, "not_found_error")
    r = client.post(
        "/v1/messages/count_tokens",
        json={"model": "fake", "messages": [{"role": "user", "content": "hello there"}]},
    )
    assert r.status_code == 200 and r.json()["input_tokens"] > 0
    # the OpenAI paths keep OpenAI's envelope
    assert "type" not in client.post("/v1/chat/completions", json={}).json()


def test_stop_reasons() -> None:
    assert stop_reason("stop") == "end_turn"
    assert stop_reason("length") == "max_tokens"
    assert stop_reason("stop", "END") == "stop_sequence"  # the engine says which one hit
    assert stop_reason("tool_calls", "END") == "tool_use"  # a call outranks it
