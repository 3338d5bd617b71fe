"""Every error reaches the client in OpenAI's envelope with the right status."""

import json

import pytest
from fastapi.testclient import TestClient

from cloudlet.errors import EngineOverloaded, EngineUnavailable, InvalidRequest
from tests.fakes import FakeChatEngine
from tests.unit.api.conftest import chat_body


def assert_envelope(
    body: dict[str, object], type_: str, code: str | None = None
) -> dict[str, object]:
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_malformed_json_is_400(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    error = assert_envelope(r.json(), "invalid_request_error")
    assert "could not parse the JSON body" in str(error["message"])


def test_body_that_is_not_an_object_is_400(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=[1, 2])
    assert r.status_code == 400
    assert_envelope(r.json(), "invalid_request_error")


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"temperature": 3}, "temperature"),
        ({"stream": 0}, "stream"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 9}, "n"),  # above the most choices one request may ask for
        ({"model": ""}, "model"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_invalid_fields_are_400_with_param(
    client: TestClient, patch: dict[str, object], param: str
) -> None:
    r = client.post("/v1/chat/completions", json={**chat_body(), **patch})
    assert r.status_code == 400
    error = assert_envelope(r.json(), "invalid_request_error")
    assert error["param"] == param


def test_missing_field_is_400(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={"model": "fake"})
    assert r.status_code == 400
    assert assert_envelope(r.json(), "invalid_request_error")["param"] == "messages"


def test_unknown_model_is_404(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={**chat_body(), "model": "gpt-99"})
    assert r.status_code == 404
    error = assert_envelope(r.json(), "invalid_request_error", "model_not_found")
    assert error["param"] == "model"
    assert client.get("/v1/models/gpt-99").status_code == 404


def test_context_length_exceeded_is_400(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=chat_body(max_tokens=1000))
    assert r.status_code == 400
    assert_envelope(r.json(), "invalid_request_error", "context_length_exceeded")


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = chat_body(messages=[{"role": "user", "content": "x" * 5000}])
    r = client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413
    assert_envelope(r.json(), "invalid_request_error", "payload_too_large")


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    payload = json.dumps(chat_body(messages=[{"role": "user", "content": "y" * 5000}])).encode()

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        for i in range(0, len(payload), 1000):
            yield payload[i : i + 1000]

    r = client.post(
        "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (EngineOverloaded("busy", retry_after=3), 503, "engine_overloaded", "3"),
        (EngineUnavailable("down"), 503, "engine_unavailable", "1"),
        (InvalidRequest("nope", param="x"), 400, None, None),
    ],
)
def test_engine_errors_map_to_status_and_retry_after(
    client: TestClient,
    chat_engine: FakeChatEngine,
    error: Exception,
    status: int,
    code: str | None,
    retry_after: str | None,
) -> None:
    chat_engine.fail_before = error  # type: ignore[assignment]
    r = client.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == status
    assert r.headers.get("retry-after") == retry_after
    expected_type = "server_error" if status == 503 else "invalid_request_error"
    assert_envelope(r.json(), expected_type, code)


def test_unexpected_exception_is_500_without_traceback(
    client: TestClient, chat_engine: FakeChatEngine
) -> None:
    chat_engine.fail_after = 1
    r = client.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 500
    error = assert_envelope(r.json(), "server_error")
    assert "exploded" not in r.text and "Traceback" not in r.text
    assert error["message"] == "The server had an error while processing your request."


def test_failure_mid_stream_is_an_sse_error_event(
    client: TestClient, chat_engine: FakeChatEngine
) -> None:
    chat_engine.fail_after = 2
    with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert_envelope(last, "server_error")
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert contents == ["", "Hello", " world"]


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert (
        "Invalid URL (GET /v1/nothing-here)"
        in assert_envelope(r.json(), "invalid_request_error")["message"]
    )  # type: ignore[operator]
    r = client.get("/v1/chat/completions")
    assert r.status_code == 405
    assert_envelope(r.json(), "invalid_request_error")


def test_embedding_model_cannot_chat(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={**chat_body(), "model": "fake-embed"})
    assert r.status_code == 400
    assert_envelope(r.json(), "invalid_request_error", "model_not_supported")
    r = client.post("/v1/embeddings", json={"model": "fake", "input": "x"})
    assert r.status_code == 400
    assert_envelope(r.json(), "invalid_request_error", "model_not_supported")
