"""Response shapes of each endpoint, with fake engines (the contract tests use the real ones)."""

import base64
import json
from array import array

from fastapi.testclient import TestClient

from cloudlet.api import create_app
from cloudlet.config import Spec
from tests.fakes import FakeChatEngine
from tests.unit.api.conftest import chat_body


def sse_data(lines: list[str]) -> list[str]:
    return [line[6:] for line in lines if line.startswith("data: ")]


def test_chat_completion_shape(client: TestClient, chat_engine: FakeChatEngine) -> None:
    r = client.post("/v1/chat/completions", json=chat_body(temperature=0.2, seed=7, stop="x"))
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello world!"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    request = chat_engine.requests[-1]
    assert request.sampling.temperature == 0.2
    assert request.sampling.seed == 7
    assert request.stop == ("x",)


def test_max_tokens_gives_length(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=chat_body(max_tokens=2)).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "Hello world"


def test_max_completion_tokens_is_honoured(client: TestClient, chat_engine: FakeChatEngine) -> None:
    client.post("/v1/chat/completions", json=chat_body(max_completion_tokens=2))
    assert chat_engine.requests[-1].max_tokens == 2


def test_stream_chunks_and_usage(client: TestClient) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        data = sse_data(list(r.iter_lines()))
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:4]] == [
        "Hello",
        " world",
        "!",
    ]
    assert chunks[4]["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "stop",
        "logprobs": None,
    }
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"]["completion_tokens"] == 3
    assert all("usage" not in c for c in chunks[:5])


def test_developer_role_becomes_system(client: TestClient, chat_engine: FakeChatEngine) -> None:
    body = chat_body(
        messages=[
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ]
    )
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    messages = chat_engine.requests[-1].messages
    assert messages is not None
    assert [(m.role, m.content) for m in messages] == [("system", "be brief"), ("user", "ab")]


def test_completions_with_echo_and_stream(client: TestClient) -> None:
    body = client.post(
        "/v1/completions", json={"model": "fake", "prompt": "Say", "echo": True}
    ).json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "SayHello world!"
    with client.stream(
        "POST",
        "/v1/completions",
        json={
            "model": "fake",
            "prompt": ["Say"],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as r:
        data = sse_data(list(r.iter_lines()))
    chunks = [json.loads(d) for d in data[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Hello world!"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["total_tokens"] == 4


def test_embeddings_float_and_base64(client: TestClient) -> None:
    body = client.post(
        "/v1/embeddings", json={"model": "fake-embed", "input": ["ab", "abc"]}
    ).json()
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["data"][1]["embedding"] == [3.0, 0.0, 0.0, 0.0]
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    b64 = client.post(
        "/v1/embeddings",
        json={"model": "fake-embed", "input": "abc", "encoding_format": "base64"},
    ).json()
    decoded = array("f", base64.b64decode(b64["data"][0]["embedding"]))
    assert list(decoded) == [3.0, 0.0, 0.0, 0.0]
    r = client.post("/v1/embeddings", json={"model": "fake-embed", "input": "a", "dimensions": 5})
    assert r.status_code == 400
    short = client.post(
        "/v1/embeddings", json={"model": "fake-embed", "input": "abc", "dimensions": 2}
    ).json()
    assert short["data"][0]["embedding"] == [1.0, 0.0]


def test_models_list_and_get(client: TestClient) -> None:
    data = client.get("/v1/models").json()["data"]
    assert [(m["id"], m["object"], m["kind"], m["status"]) for m in data] == [
        ("fake", "model", "chat", "ready"),
        ("fake-embed", "model", "embedding", "ready"),
    ]
    assert client.get("/v1/models/fake").json()["id"] == "fake"


def test_health_ready_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "auth": "open"}
    assert client.get("/ready").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/v1/chat/completions" in schema["paths"]
    assert "ErrorResponse" in schema["components"]["schemas"]


def test_ready_is_503_when_a_model_failed_to_load() -> None:
    broken = FakeChatEngine("broken")
    broken.load_error = RuntimeError("weights missing")
    engines = {"broken": broken, "ok": FakeChatEngine("ok")}
    app = create_app(Spec(models=[]), engines, accounts=False)
    with TestClient(app) as c:
        r = c.get("/ready")
        assert r.status_code == 503
        assert r.json()["models"] == {"broken": "failed: weights missing", "ok": "ready"}
        r = c.post("/v1/chat/completions", json={**chat_body(), "model": "broken"})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "engine_unavailable"
        assert (
            c.post("/v1/chat/completions", json={**chat_body(), "model": "ok"}).status_code == 200
        )
    assert broken.closed
