"""The remote engine's HTTP client keeps an upstream from sending us, or our key, elsewhere.

Real servers on loopback: an upstream that answers with a redirect and a cookie, and another
server that records whatever reaches it (where the redirect points, and where the proxy
variables point). The redirect is not followed, the cookie is not sent back, and the proxy
variables are not read: the key only ever reaches the upstream the spec names.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloudlet.config import ModelSpec
from cloudlet.domain import ChatMessage, GenerationRequest, ModelId
from cloudlet.engines.openai_remote import OpenAIEngine
from cloudlet.errors import UpstreamError

ASK = GenerationRequest(model=ModelId("m"), messages=(ChatMessage("user", "hi"),))
KEY = "sk-upstream-secret-7f3a"


class Recorder(ThreadingHTTPServer):
    """Answers every request with ``status`` and ``headers``; keeps each request's headers."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.seen: list[dict[str, str]] = []
        self.status, self.answer_headers = status, headers
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def by_name(self) -> str:
        """By host name: cookie jars keep no cookies of a bare IP address."""
        return f"http://localhost:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b'{"error": {"message": "moved"}}'
        self.send_response(self.server.status)
        for name, value in self.server.answer_headers.items():
            self.send_header(name, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


def serve(server: Recorder) -> Iterator[Recorder]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    yield from serve(Recorder(200, {}))


@pytest.fixture
def redirecting(elsewhere: Recorder) -> Iterator[Recorder]:
    moved = {"location": elsewhere.url + "/v1/chat/completions", "set-cookie": "session=abc"}
    yield from serve(Recorder(307, moved))


async def test_redirects_cookies_and_proxy_variables_never_move_the_key(
    redirecting: Recorder, elsewhere: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, elsewhere.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    spec = ModelSpec.model_validate(
        {"name": "m", "engine": "openai", "url": redirecting.by_name + "/v1", "api_key": "${K}"}
    )
    engine = OpenAIEngine(spec, environ={"K": KEY})
    await engine.start()
    try:
        for _ in range(2):
            with pytest.raises(UpstreamError):
                await engine.generate(ASK)
    finally:
        await engine.close()
    assert [seen["authorization"] for seen in redirecting.seen] == [f"Bearer {KEY}"] * 2
    assert "cookie" not in redirecting.seen[1]  # the upstream's cookie was not kept
    assert elsewhere.seen == []  # neither the redirect nor the proxy variables reached it
