"""The Responses API in-process (fake engine, SQLite ledger): shapes, events, stored turns."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from cloudlet.domain import ChatMessage, ToolCall
from tests.fakes import FakeChatEngine

EVENT = TypeAdapter(ResponseStreamEvent)


def test_response_object_validates_against_the_clients_type(client: TestClient) -> None:
    r = client.post(
        "/v1/responses", json={"model": "fake", "input": "hi", "instructions": "Be brief."}
    )
    assert r.status_code == 200, r.text
    response = Response.model_validate(r.json())
    assert response.output_text == "Hello world!" and response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens == 3


def test_stream_events_validate_and_are_numbered(client: TestClient) -> None:
    body = {"model": "fake", "input": "hi", "stream": True}
    with client.stream("POST", "/v1/responses", json=body) as r:
        datas = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    for data in datas:
        EVENT.validate_python(data)
    assert [d["sequence_number"] for d in datas] == list(range(len(datas)))
    kinds = [d["type"] for d in datas]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_previous_response_id_continues_the_stored_conversation(
    client: TestClient, chat_engine: FakeChatEngine
) -> None:
    first = client.post(
        "/v1/responses",
        json={
            "model": "fake",
            "instructions": "Only for the first turn.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            ],
        },
    ).json()
    second = client.post(
        "/v1/responses",
        json={"model": "fake", "input": "And tomorrow?", "previous_response_id": first["id"]},
    )
    assert second.status_code == 200 and second.json()["previous_response_id"] == first["id"]
    assert chat_engine.requests[-1].messages == (
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "w", "{}"),)),
        ChatMessage("tool", "sunny", tool_call_id="c1"),
        ChatMessage("assistant", "Hello world!"),
        ChatMessage("user", "And tomorrow?"),
    )
    unknown = client.post(
        "/v1/responses", json={"model": "fake", "input": "x", "previous_response_id": "resp_x"}
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "response_not_found"
    assert unknown.json()["error"]["param"] == "previous_response_id"
