"""Failover through a real `cloudlet serve` against fake upstreams with injected faults.

Before the first token, a 500, a 429, a dead or refused connection and a slow upstream all
fail over to the next target without the client noticing; after it, a dropped connection ends
the stream with an SSE error event. A failing upstream trips its circuit breaker, after which
it is no longer asked (opening and closing on the clock is covered by the unit tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, free_port, start_server, stop_server
from tests.fakes_upstream import Dead, Drop, FakeUpstream, Slow, Status

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def ups() -> Iterator[dict[str, FakeUpstream]]:
    started = {
        "primary": FakeUpstream(words=("primary",)).start(),
        "backup": FakeUpstream(words=("backup",)).start(),
        "flaky": FakeUpstream(default=Status(500)).start(),
    }
    yield started
    for up in started.values():
        up.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ups: dict[str, FakeUpstream]
) -> Iterator[Server]:
    refused = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    config = f"""
models:
  - name: primary
    engine: openai
    url: {ups["primary"].url}
    timeouts: {{first_token_s: 0.5}}
    breaker: {{failures: 1000}}
  - name: backup
    engine: openai
    url: {ups["backup"].url}
  - name: replicated
    engine: openai
    urls: [{refused}, {ups["backup"].url}]
    health_check: {{interval_s: 0}}
  - name: flaky
    engine: openai
    url: {ups["flaky"].url}
    breaker: {{failures: 2, cooldown_s: 3600}}
    health_check: {{interval_s: 0}}
routes:
  - name: chat
    targets: [primary, backup]
    policy: fallback
  - name: guarded
    targets: [flaky, backup]
    policy: fallback
"""
    srv = start_server(tmp_path_factory.mktemp("failover"), config)
    yield srv
    stop_server(srv)


def chat(server: Server, model: str = "chat", **extra: object) -> httpx.Response:
    body = {"model": model, "messages": HI, **extra}
    return httpx.post(server.v1 + "/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize(
    "fault",
    [Status(500), Status(503), Status(429, retry_after=5), Dead(), Slow(3.0)],
    ids=["500", "503", "429", "dead", "slow"],
)
def test_failures_before_the_first_token_are_invisible(
    server: Server, ups: dict[str, FakeUpstream], fault: object
) -> None:
    ups["primary"].fail_next(fault)  # type: ignore[arg-type]
    r = chat(server)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "backup"
    assert (r.headers["x-cloudlet-target"], r.headers["x-cloudlet-spilled"]) == ("backup", "true")


def test_a_streaming_client_sees_only_the_answer_after_failover(
    server: Server, ups: dict[str, FakeUpstream]
) -> None:
    ups["primary"].fail_next(Status(502))
    body = {"model": "chat", "messages": HI, "stream": True}
    with httpx.stream("POST", server.v1 + "/chat/completions", json=body) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "backup"


def test_a_refused_replica_fails_over_to_the_next_replica(server: Server) -> None:
    for _ in range(3):
        r = chat(server, "replicated")
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "backup"
        assert r.headers["x-cloudlet-spilled"] == "false"  # same model, another replica


def test_a_failure_after_the_first_token_is_an_sse_error_event(
    server: Server, ups: dict[str, FakeUpstream]
) -> None:
    ups["primary"].fail_next(Drop(after=1))
    body = {"model": "chat", "messages": HI, "stream": True}
    with httpx.stream("POST", server.v1 + "/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["x-cloudlet-target"] == "primary"
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert (error["type"], error["code"]) == ("server_error", "upstream_error")
    assert "127.0.0.1" not in error["message"]  # no upstream URL in what clients see
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "primary"


def test_a_non_streaming_client_gets_a_502_for_a_mid_stream_failure(
    server: Server, ups: dict[str, FakeUpstream]
) -> None:
    ups["primary"].fail_next(Drop(after=1))
    r = chat(server)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"


def test_the_client_sees_the_last_error_when_every_target_fails(
    server: Server, ups: dict[str, FakeUpstream]
) -> None:
    ups["primary"].fail_next(Status(500))
    ups["backup"].fail_next(Status(429, retry_after=7))
    r = chat(server)
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json()["error"]["code"] == "upstream_rate_limited"


def test_the_circuit_opens_on_a_failing_upstream(
    server: Server, ups: dict[str, FakeUpstream]
) -> None:
    flaky = ups["flaky"]
    for _ in range(4):
        r = chat(server, "guarded")
        assert r.status_code == 200 and r.headers["x-cloudlet-target"] == "backup"
    assert len(flaky.calls()) == 2  # open after two failures: no more calls to it
