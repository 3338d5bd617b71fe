"""Malformed upstream replies through a real `cloudlet serve`: a 502 or a failover, never a 500.

A fake upstream answers with each malformed shape servers were seen to send; a fallback route
[bad, ok] must answer 200 from `ok` for each, a model of two URLs [bad, good] must answer from
`good` and stop asking `bad` once its circuit opens, and a keep-alive-only stream must end on
the idle timeout with an error and a ledger row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import FakeUpstream, JsonAnswer, KeepAlive, Lines, Raw

ADMIN = "admin-secret-for-bad-upstreams"
HI = [{"role": "user", "content": "hi"}]


def _line(chunk: object) -> bytes:
    return b"data: " + json.dumps(chunk).encode()


# Each shape as an SSE stream that fails before its first token, or as a whole body.
MALFORMED = {
    "error-text": Raw(b'{"error": "Model is overloaded"}', status=200),
    "error-null": Raw(b'{"error": null}', status=200),
    "error-text-503": Raw(b'{"error": "Input validation error"}', status=503),
    "error-null-502": Raw(b'{"error": null}', status=502),
    "not-json": Raw(b"<html>bad gateway</html>", status=200, content_type="text/html"),
    "choices-int": Lines((_line({"choices": 5}),)),
    "choices-object": Lines((_line({"choices": {"a": 1}}),)),
    "usage-text": Lines((_line({"choices": [], "usage": {"prompt_tokens": "abc"}}),)),
    "usage-negative": Lines((_line({"choices": [], "usage": {"prompt_tokens": -5}}),)),
    "chunk-error": Lines((_line({"error": "text"}),)),
    "chunk-not-json": Lines((b"data: {oops",)),
    "no-done": Lines((b": just a comment",)),
}


@pytest.fixture(scope="module")
def ups() -> Iterator[dict[str, FakeUpstream]]:
    started = {
        "bad": FakeUpstream(words=("bad",)).start(),
        "ok": FakeUpstream(words=("ok",)).start(),
        "pair-bad": FakeUpstream(words=("bad",)).start(),
        "pair-good": FakeUpstream(words=("good",)).start(),
    }
    yield started
    for up in started.values():
        up.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ups: dict[str, FakeUpstream]
) -> Iterator[Server]:
    config = f"""
models:
  - name: bad
    engine: openai
    url: {ups["bad"].url}
    breaker: {{failures: 1000}}
    health_check: {{interval_s: 0}}
    timeouts: {{read_s: 1.0}}
    price: {{input_per_mtok: 1, output_per_mtok: 1}}
  - name: ok
    engine: openai
    url: {ups["ok"].url}
  - name: pair
    engine: openai
    urls: [{ups["pair-bad"].url}, {ups["pair-good"].url}]
    breaker: {{failures: 2, cooldown_s: 3600}}
    health_check: {{interval_s: 0}}
  - name: vectors
    engine: openai
    kind: embedding
    urls: [{ups["pair-bad"].url}, {ups["ok"].url}]
    breaker: {{failures: 1000}}
    health_check: {{interval_s: 0}}
routes:
  - name: chat
    targets: [bad, ok]
    policy: fallback
"""
    srv = start_server(
        tmp_path_factory.mktemp("bad-upstreams"), config, {"CLOUDLET_ADMIN_KEY": ADMIN}
    )
    yield srv
    stop_server(srv)


def chat(server: Server, model: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": HI, "stream": stream}
    headers = {"Authorization": f"Bearer {ADMIN}"}
    return httpx.post(server.v1 + "/chat/completions", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("shape", list(MALFORMED))
def test_a_fallback_route_answers_from_ok_for_each_malformed_shape(
    server: Server, ups: dict[str, FakeUpstream], shape: str
) -> None:
    ups["bad"].fail_next(MALFORMED[shape])
    r = chat(server, "chat")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "ok"
    assert r.headers["x-cloudlet-target"] == "ok"


@pytest.mark.parametrize("shape", list(MALFORMED))
def test_the_bad_model_alone_answers_502_in_the_openai_envelope(
    server: Server, ups: dict[str, FakeUpstream], shape: str
) -> None:
    ups["bad"].fail_next(MALFORMED[shape])  # one replica: tried once
    r = chat(server, "bad")
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "upstream_error")
    assert "127.0.0.1" not in error["message"]


def test_a_bad_replica_fails_over_and_is_ejected(
    server: Server, ups: dict[str, FakeUpstream]
) -> None:
    ups["pair-bad"].default = Lines((_line({"choices": 5}),))
    try:
        for _ in range(4):
            r = chat(server, "pair")
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "good"
        assert len(ups["pair-bad"].calls()) <= 2  # open after two failures: not asked again
    finally:
        ups["pair-bad"].default = ups["ok"].default


def test_a_json_answer_to_a_streaming_request_is_the_answer(
    server: Server, ups: dict[str, FakeUpstream]
) -> None:
    ups["ok"].fail_next(JsonAnswer())
    body = {"model": "ok", "messages": HI, "stream": True}
    headers = {"Authorization": f"Bearer {ADMIN}"}  # the admin key closes open mode
    url = server.v1 + "/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "ok"
    ups["ok"].fail_next(JsonAnswer())
    r = chat(server, "ok")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ok"


def test_keep_alives_alone_end_on_the_idle_timeout_with_an_error_and_a_row(
    server: Server, ups: dict[str, FakeUpstream]
) -> None:
    ups["bad"].fail_next(KeepAlive(every=0.1))
    body = {"model": "bad", "messages": HI, "stream": True}
    headers = {"Authorization": f"Bearer {ADMIN}"}
    url = server.v1 + "/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as r:
        assert r.status_code == 200  # the first word came, then only comments
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert json.loads(events[-1])["error"]["code"] == "upstream_timeout"
    text = admin_usage(server)
    rows = [row for row in csv.DictReader(io.StringIO(text)) if row["model"] == "bad"]
    assert rows and rows[-1]["status"] != "ok"


def admin_usage(server: Server) -> str:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    r = httpx.get(server.base_url + "/admin/usage", params={"format": "csv"}, headers=headers)
    assert r.status_code == 200, r.text
    return r.text


@pytest.mark.parametrize(
    "fault",
    [
        Raw(b'{"error": "text"}'),
        Raw(b'{"data": 5}'),
        Raw(b'{"data": [{"index": 0, "embedding": ["x"]}]}'),
        Raw(b'{"data": [{"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": -1}}'),
    ],
    ids=["error-text", "data-int", "not-numbers", "usage-negative"],
)
def test_malformed_embeddings_fail_over_to_the_next_replica(
    server: Server, ups: dict[str, FakeUpstream], fault: Raw
) -> None:
    ups["pair-bad"].default = fault
    try:
        for _ in range(2):  # whichever replica the balancer asks first
            body = {"model": "vectors", "input": "hello"}
            r = httpx.post(
                server.v1 + "/embeddings",
                json=body,
                headers={"Authorization": f"Bearer {ADMIN}"},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            assert r.json()["data"][0]["embedding"] == [5.0, 1.0, 0.0]
    finally:
        ups["pair-bad"].default = ups["ok"].default


@pytest.mark.parametrize("body", [b'{"error": "Input validation error"}', b'{"error": null}'])
def test_an_upstream_refusing_the_request_in_any_shape_is_a_400(
    server: Server, ups: dict[str, FakeUpstream], body: bytes
) -> None:
    ups["bad"].fail_next(Raw(body, status=422))
    r = chat(server, "bad")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
