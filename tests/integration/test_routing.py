"""Remote engines through a real `cloudlet serve`: passthrough, usage, headers, routes as models,
embeddings, and nothing a client sends reaching an upstream's URL or headers; the key stays
secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import FakeUpstream, NoUsage

KEY = "sk-test-5f2b9c0d-not-for-anyone"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FakeUpstream]]:
    ups = {
        "own": FakeUpstream(words=("local", " answer")).start(),
        "cloud": FakeUpstream().start(),
    }
    yield ups
    for up in ups.values():
        up.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, FakeUpstream]
) -> Iterator[Server]:
    config = f"""
server: {{log_level: debug}}
models:
  - name: own-vllm
    engine: openai
    url: {upstreams["own"].url}
    upstream_model: local-model
  - name: cloud
    engine: openai
    url: {upstreams["cloud"].url}
    upstream_model: gpt-up
    api_key: ${{ROUTING_TEST_KEY}}
    headers: {{X-Org: "${{ROUTING_TEST_ORG}}", X-Static: fixed}}
    price: {{input_per_mtok: 0.2, output_per_mtok: 0.6}}
    cloud: true
  - name: embedder
    engine: openai
    kind: embedding
    url: {upstreams["cloud"].url}
    upstream_model: embed-up
    api_key: ${{ROUTING_TEST_KEY}}
routes:
  - name: chat
    targets: [own-vllm, cloud]
    policy: fallback
"""
    env = {"ROUTING_TEST_KEY": KEY, "ROUTING_TEST_ORG": "org-7"}
    srv = start_server(tmp_path_factory.mktemp("routing"), config, env=env)
    yield srv
    stop_server(srv)


@pytest.fixture
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key="client-key", max_retries=0)


def test_streaming_passes_through_with_the_upstreams_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="cloud",
        messages=HI,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from upstream"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 3)


def test_usage_is_counted_locally_when_the_upstream_omits_it(
    client: OpenAI, upstreams: dict[str, FakeUpstream]
) -> None:
    upstreams["cloud"].fail_next(NoUsage())
    completion = client.chat.completions.create(model="cloud", messages=HI)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "Hello from upstream"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3 and completion.usage.prompt_tokens > 0


def test_legacy_completions_pass_through(server: Server) -> None:
    r = httpx.post(server.v1 + "/completions", json={"model": "cloud", "prompt": "Say hi"})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == "Hello from upstream"


def test_every_answer_says_where_it_ran(server: Server) -> None:
    r = httpx.post(server.v1 + "/chat/completions", json={"model": "chat", "messages": HI})
    assert r.status_code == 200
    assert r.headers["x-cloudlet-target"] == "own-vllm"
    assert r.headers["x-cloudlet-spilled"] == "false"
    body = {"model": "chat", "messages": HI, "stream": True}
    with httpx.stream("POST", server.v1 + "/chat/completions", json=body) as r:
        assert (r.headers["x-cloudlet-target"], r.headers["x-cloudlet-spilled"]) == (
            "own-vllm",
            "false",
        )
        assert "data: [DONE]" in list(r.iter_lines())


def test_routes_are_listed_as_models(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["own-vllm", "cloud", "embedder", "chat"]
    assert client.models.retrieve("chat").id == "chat"


def test_embeddings_pass_through(server: Server, client: OpenAI) -> None:
    result = client.embeddings.create(model="embedder", input=["ab", "abcd"])
    assert [d.embedding[0] for d in result.data] == [2.0, 4.0]
    assert result.usage.prompt_tokens == 14
    r = httpx.post(server.v1 + "/embeddings", json={"model": "embedder", "input": "x"})
    assert r.headers["x-cloudlet-target"] == "embedder"


def test_no_request_field_reaches_an_upstream_url_or_header(
    server: Server, upstreams: dict[str, FakeUpstream]
) -> None:
    """LiteLLM #31467: a body's api_base / base_url / extra_headers must not steer the call."""
    cloud = upstreams["cloud"]
    before = len(cloud.requests)
    hostile = {
        "model": "cloud",
        "messages": HI,
        "api_base": "http://169.254.169.254/latest",
        "base_url": "http://169.254.169.254/latest",
        "api_key": "sk-attacker",
        "extra_headers": {"X-Evil": "1", "Host": "evil.example"},
        "headers": {"Authorization": "Bearer sk-attacker"},
        "extra_body": {"url": "http://evil.example"},
        "user": "http://evil.example",
        "metadata": {"api_base": "http://evil.example"},
    }
    headers = {
        "Authorization": "Bearer sk-attacker",
        "X-Forwarded-Host": "evil.example",
        "X-Org": "org-attacker",
        "X-Evil": "1",
    }
    r = httpx.post(server.v1 + "/chat/completions", json=hostile, headers=headers)
    assert r.status_code == 200
    seen = cloud.requests[before:]
    assert len(seen) == 1
    call = seen[0]
    assert (call.method, call.path) == ("POST", "/v1/chat/completions")
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.headers["x-org"] == "org-7" and call.headers["x-static"] == "fixed"
    assert call.headers["host"] == f"127.0.0.1:{cloud.port}"
    assert "x-evil" not in call.headers and "x-forwarded-host" not in call.headers
    assert "evil" not in repr(call.headers) and "attacker" not in repr(call.headers)
    assert set(call.body) <= {
        "model",
        "stream",
        "stream_options",
        "messages",
        "max_tokens",
        "stop",
        "temperature",
        "top_p",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
    }
    assert call.body["model"] == "gpt-up"
    assert "evil" not in repr(call.body) and "attacker" not in repr(call.body)


def test_a_url_as_model_name_is_just_an_unknown_model(server: Server) -> None:
    body = {"model": "http://169.254.169.254/v1", "messages": HI}
    r = httpx.post(server.v1 + "/chat/completions", json=body)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_the_api_key_is_never_returned_or_logged(server: Server, client: OpenAI) -> None:
    client.chat.completions.create(model="cloud", messages=HI)  # type: ignore[arg-type]
    bodies = [
        httpx.get(server.base_url + path).text
        for path in (
            "/v1/models",
            "/v1/models/cloud",
            "/stats",
            "/ready",
            "/metrics",
            "/openapi.json",
        )
    ]
    assert all(KEY not in body for body in bodies)
    assert KEY not in server.output()  # at log level debug, with upstream calls logged
    assert "ROUTING_TEST_KEY" in Path(server.log.parent / "cloudlet.yaml").read_text()
