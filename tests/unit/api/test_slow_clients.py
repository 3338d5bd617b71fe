"""Slow, odd and leaving clients against a real uvicorn with the serve command's options (#13).

Fake engines; real sockets. Timeouts are configured short (a second) and every wait is bounded
well beyond them, so a test fails instead of hanging; no test asserts a duration.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from cloudlet.api import create_app
from cloudlet.api.limits import has_lone_surrogate
from cloudlet.config import Spec
from cloudlet.config.spec import ServerSpec
from cloudlet.config.storage import StorageSpec
from tests.fakes import FakeChatEngine, FakeEmbeddingEngine
from tests.unit.api.served import Served, serve

ADMIN = "admin-key-for-slow-client-tests"
LIMITS = ServerSpec(
    header_timeout_s=1.0, body_timeout_s=1.0, max_header_bytes=8192, max_body_bytes=65536
)
AUTH = {"Authorization": f"Bearer {ADMIN}"}  # an admin key closes open mode
HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer " + ADMIN.encode() + b"\r\n"
)
BOUND_S = 15.0  # a hang fails after this; the configured timeouts are 1 s


@pytest.fixture
def engine() -> FakeChatEngine:
    return FakeChatEngine("fake", context=100_000)


@pytest.fixture
def served(engine: FakeChatEngine, tmp_path: Path) -> Iterator[Served]:
    spec = Spec(
        server=LIMITS,
        models=[],
        storage=StorageSpec(ledger=f"sqlite:///{tmp_path}/ledger.db"),
    )
    app = create_app(spec, {"fake": engine, "fake-embed": FakeEmbeddingEngine()}, admin_key=ADMIN)
    with serve(app, LIMITS) as running:
        yield running


def connect(served: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port))
    sock.settimeout(BOUND_S)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def body_of(response: bytes) -> dict[str, object]:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


def test_slowloris_connections_get_408_and_are_closed(served: Served) -> None:
    socks = [connect(served) for _ in range(50)]
    for sock in socks:
        sock.sendall(HEAD)  # the head never ends
    answers = [read_all(sock) for sock in socks]  # read_all returns only once closed
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 ")
        error = body_of(answer)["error"]
        assert error["code"] == "request_timeout"  # type: ignore[index]
        assert "server.header_timeout_s" in error["message"]  # type: ignore[index]
    assert httpx.get(served.base_url + "/health").status_code == 200


def test_an_idle_connection_is_closed_with_408(served: Served) -> None:
    assert read_all(connect(served)).startswith(b"HTTP/1.1 408 ")


def test_a_stalled_body_gets_408(served: Served, engine: FakeChatEngine) -> None:
    sock = connect(served)
    sock.sendall(HEAD + b"Content-Length: 100\r\n\r\n" + b'{"model": "fa')
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert "server.body_timeout_s" in body_of(answer)["error"]["message"]  # type: ignore[index]
    assert engine.requests == []


def test_a_body_deadline_shorter_than_the_heads_is_kept(
    engine: FakeChatEngine, tmp_path: Path
) -> None:
    """A connection has one timer, set for a head's 30 s; a body's 1 s deadline, armed later
    but falling earlier, must move it (the socket gives up after 15 s). On a keep-alive
    connection, after a first request, as on a new one."""
    limits = LIMITS.model_copy(update={"header_timeout_s": 30.0})
    spec = Spec(server=limits, models=[], storage=StorageSpec(ledger="off"))
    app = create_app(spec, {"fake": engine}, admin_key=ADMIN)
    stalled = HEAD + b"Content-Length: 100\r\n\r\n" + b'{"model": "fa'
    with serve(app, limits) as served:
        for first in (None, b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"):
            sock = connect(served)
            if first is not None:
                sock.sendall(first)
                assert read_response(sock).startswith(b"HTTP/1.1 200 ")
            sock.sendall(stalled)
            answer = read_all(sock)
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert "server.body_timeout_s" in body_of(answer)["error"]["message"]  # type: ignore[index]


def test_a_keep_alive_connection_may_idle_then_send_another_request(served: Served) -> None:
    with httpx.Client(base_url=served.base_url) as http:
        assert http.get("/health").status_code == 200
        assert http.get("/health").status_code == 200


def test_oversized_headers_get_431(served: Served) -> None:
    r = httpx.get(served.base_url + "/health", headers={"x-big": "a" * 100_000})
    assert r.status_code == 431
    assert r.json()["error"]["code"] == "headers_too_large"
    # A head that arrives in pieces is counted as it arrives.
    sock = connect(served)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")
    for _ in range(20):
        sock.sendall(b"x-filler: " + b"a" * 1000 + b"\r\n")
    assert read_all(sock).startswith(b"HTTP/1.1 431 ")
    assert httpx.get(served.base_url + "/health", headers={"x-ok": "a" * 4000}).status_code == 200


def test_a_huge_body_gets_a_413_the_openai_client_receives(served: Served) -> None:
    client = openai.OpenAI(base_url=served.base_url + "/v1", api_key=ADMIN, max_retries=2)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "a" * (64 << 20)}]
        )
    assert raised.value.status_code == 413
    assert raised.value.body["code"] == "payload_too_large"  # type: ignore[index]
    # 413 is not retried by the SDK (a reset would have been, twice): one request arrived.
    assert served.paths == ["/v1/chat/completions"]
    assert len(usage_rows(served)) == 0  # refused before admission


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "fake", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": "fake", "messages": [{"role": "user", "content": "a\\udfff"}]}',
        b'{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
        '{"model": "fake", "messages": [{"role": "user", "content": "\ud800"}]}'.encode(
            "utf-8", "surrogatepass"
        ),
    ],
)
def test_a_lone_surrogate_is_a_400(served: Served, raw: bytes) -> None:
    r = httpx.post(
        served.base_url + "/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json", **AUTH},
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "surrogate" in r.json()["error"]["message"]


def test_surrogate_detection() -> None:
    assert has_lone_surrogate(json.dumps({"c": "\ud800"}).encode())
    assert has_lone_surrogate(json.dumps({"c": "x\udc00y"}).encode())
    assert not has_lone_surrogate(json.dumps({"c": "\U0001f600"}).encode())  # a pair
    assert not has_lone_surrogate(json.dumps({"c": "\\ud800"}).encode())  # text, escaped
    assert has_lone_surrogate(b'{"c": "\\\\\\ud800"}')  # a backslash, then a surrogate
    assert not has_lone_surrogate("{'c': '\U0001f600'}".encode())


def test_the_connection_survives_a_500(served: Served, engine: FakeChatEngine) -> None:
    engine.fail_after = 1
    body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body
    sock = connect(served)
    sock.sendall(request)
    first = read_response(sock)
    assert first.startswith(b"HTTP/1.1 500 ")
    engine.fail_after = None
    sock.sendall(request)  # the same keep-alive connection
    second = read_response(sock)
    assert second.startswith(b"HTTP/1.1 200 ")


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return head + b"\r\n\r\n" + rest


def usage_rows(served: Served) -> list[dict[str, str]]:
    r = httpx.get(
        served.base_url + "/admin/usage",
        params={"format": "csv"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 200
    return list(csv.DictReader(io.StringIO(r.text)))


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_its_request(
    served: Served, engine: FakeChatEngine, stream: bool
) -> None:
    engine.gate = asyncio.Event()  # never opened: the generation would wait forever
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "stream": stream}

    async def leave() -> None:
        async with httpx.AsyncClient(base_url=served.base_url, headers=AUTH) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/v1/chat/completions", json=body, timeout=1.0)

    asyncio.run(leave())
    rows: list[dict[str, str]] = []
    deadline = time.monotonic() + BOUND_S
    while not rows and time.monotonic() < deadline:  # the writer batches rows
        rows = usage_rows(served)
        time.sleep(0.1)
    assert [r["status"] for r in rows] == ["cancelled"]
    assert engine.cancelled == 1


def test_a_client_gone_before_the_watcher_starts_is_seen_when_it_starts(
    served: Served, engine: FakeChatEngine
) -> None:
    """The disconnect watcher starts WATCH_AFTER_S after the body: a client that sends its
    request and closes at once is gone before that, and its request is still cancelled."""
    engine.gate = asyncio.Event()  # never opened
    body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}]})
    sock = connect(served)
    sock.sendall(HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body.encode())
    sock.close()
    rows: list[dict[str, str]] = []
    deadline = time.monotonic() + BOUND_S
    while not rows and time.monotonic() < deadline:
        rows = usage_rows(served)
        time.sleep(0.1)
    assert [r["status"] for r in rows] == ["cancelled"]
    assert engine.cancelled == 1
