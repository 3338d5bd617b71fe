"""Remote engines through a real `cloudlet serve`: passthrough, usage, headers, routes as models,
embeddings, and nothing a client sends reaching an upstream's URL or headers; the key stays
secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import TOOL_ARGUMENTS, FakeUpstream, NoUsage, choice_word

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
    vision: true
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


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_pass_through(
    client: OpenAI, upstreams: dict[str, FakeUpstream], stream: bool
) -> None:
    cloud = upstreams["cloud"]
    before = len(cloud.calls())
    kwargs: dict[str, Any] = dict(model="cloud", messages=HI, n=3, max_tokens=5)
    if stream:
        chunks = list(
            client.chat.completions.create(
                **kwargs, stream=True, stream_options={"include_usage": True}
            )
        )
        texts = ["", "", ""]
        reasons: dict[int, str] = {}
        for chunk in chunks:
            for c in chunk.choices:
                texts[c.index] += c.delta.content or ""
                if c.finish_reason:
                    reasons[c.index] = c.finish_reason
        usage = chunks[-1].usage
        assert reasons == {0: "stop", 1: "stop", 2: "stop"}
    else:
        r = client.chat.completions.create(**kwargs)
        assert [c.index for c in r.choices] == [0, 1, 2]
        texts = [c.message.content or "" for c in r.choices]
        usage = r.usage
    words = ("Hello", " from", " upstream")
    assert texts == ["".join(choice_word(w, c) for w in words) for c in range(3)]
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 9)  # the prompt once
    (sent,) = cloud.calls()[before:]
    assert (sent.body["n"], sent.body["max_tokens"]) == (3, 5)


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


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
HISTORY: Any = [
    {"role": "user", "content": "Weather in Paris, then in Rome?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
]


@pytest.mark.parametrize("stream", [False, True])
def test_tools_pass_through_unchanged(
    client: OpenAI, upstreams: dict[str, FakeUpstream], stream: bool
) -> None:
    cloud = upstreams["cloud"]
    before = len(cloud.calls())
    choice: Any = {"type": "function", "function": {"name": "get_weather"}}
    kwargs: dict[str, Any] = dict(
        model="cloud",
        messages=HISTORY,
        tools=[WEATHER_TOOL],
        tool_choice=choice,
        parallel_tool_calls=False,
    )
    if stream:
        chunks = list(client.chat.completions.create(**kwargs, stream=True))
        deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
        assert deltas[0].id == "call_up1" and deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
        assert all(d.id is None and d.function.name is None for d in deltas[1:])  # type: ignore[union-attr]
        arguments = "".join(d.function.arguments or "" for d in deltas)  # type: ignore[union-attr]
        reason = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
        assert reason == ["tool_calls"]
    else:
        r = client.chat.completions.create(**kwargs)
        (call,) = r.choices[0].message.tool_calls or []
        assert (call.id, call.function.name) == ("call_up1", "get_weather")
        arguments = call.function.arguments
        assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert arguments == "".join(TOOL_ARGUMENTS)
    (sent,) = cloud.calls()[before:]
    assert sent.body["tools"] == [WEATHER_TOOL]
    assert sent.body["tool_choice"] == choice
    assert sent.body["parallel_tool_calls"] is False
    assert sent.body["messages"] == HISTORY


def test_logprobs_pass_through(client: OpenAI, upstreams: dict[str, FakeUpstream]) -> None:
    cloud = upstreams["cloud"]
    before = len(cloud.calls())
    r = client.chat.completions.create(model="cloud", messages=HI, logprobs=True, top_logprobs=2)  # type: ignore[arg-type]
    (sent,) = cloud.calls()[before:]
    assert (sent.body["logprobs"], sent.body["top_logprobs"]) == (True, 2)
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None
    assert "".join(t.token for t in content) == r.choices[0].message.content
    assert all(t.logprob == -0.5 and len(t.top_logprobs) == 2 for t in content)


IMAGE: Any = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
]


def test_images_pass_through_to_a_vision_model_only(
    client: OpenAI, server: Server, upstreams: dict[str, FakeUpstream]
) -> None:
    cloud = upstreams["cloud"]
    before = len(cloud.calls())
    r = client.chat.completions.create(model="cloud", messages=IMAGE)
    assert r.choices[0].message.content == "Hello from upstream"
    (sent,) = cloud.calls()[before:]
    assert sent.body["messages"] == IMAGE
    refused = httpx.post(
        server.v1 + "/chat/completions", json={"model": "own-vllm", "messages": IMAGE}
    )
    assert refused.status_code == 400
    assert "'own-vllm' does not accept images" in refused.json()["error"]["message"]
    # a route reaches a model without vision: refused too, naming that model
    routed = httpx.post(server.v1 + "/chat/completions", json={"model": "chat", "messages": IMAGE})
    assert routed.status_code == 400 and "own-vllm" in routed.json()["error"]["message"]


def test_models_list_capabilities(server: Server) -> None:
    data = {m["id"]: m for m in httpx.get(server.v1 + "/models").json()["data"]}
    assert data["cloud"]["capabilities"] == ["chat", "tools", "vision"]
    assert data["own-vllm"]["capabilities"] == ["chat", "tools"]
    assert data["embedder"]["capabilities"] == ["embeddings"]
    assert data["chat"]["capabilities"] == ["chat", "tools"]  # what every target can do
    assert data["cloud"]["context_length"] > 0
