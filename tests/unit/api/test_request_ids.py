"""``x-request-id`` on every response, success and error, equal to the ledger row's id (or
the client's own id, echoed and kept with the row); the admin API finds the row by it."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloudlet.api import create_app
from cloudlet.config import Spec
from cloudlet.config.storage import StorageSpec
from cloudlet.errors import UpstreamError
from tests.fakes import FakeChatEngine
from tests.unit.api.conftest import chat_body

ADMIN = "admin-key-for-request-id-tests"


@pytest.fixture
def client(chat_engine: FakeChatEngine, tmp_path: Path) -> Iterator[TestClient]:
    """An app with a ledger, called with the admin key (which may also generate)."""
    spec = Spec(models=[], storage=StorageSpec(ledger=f"sqlite:///{tmp_path}/ledger.db"))
    app = create_app(spec, {"fake": chat_engine}, admin_key=ADMIN)
    with TestClient(app, raise_server_exceptions=False) as made:
        made.headers["Authorization"] = f"Bearer {ADMIN}"
        yield made


def row_of(client: TestClient, request_id: str) -> list[dict[str, object]]:
    """The ledger rows of ``request_id`` (the writer flushes within its interval)."""
    deadline = time.monotonic() + 10
    while True:
        found = client.get(f"/admin/requests/{request_id}")
        if found.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found.status_code == 200, found.text
    rows: list[dict[str, object]] = found.json()["data"]
    return rows


def test_every_answer_has_a_request_id_that_finds_its_row(client: TestClient) -> None:
    ok = client.post("/v1/chat/completions", json=chat_body())
    streamed = client.post("/v1/chat/completions", json=chat_body(stream=True))
    unknown = client.post("/v1/chat/completions", json={**chat_body(), "model": "nope"})
    invalid = client.post("/v1/chat/completions", json={"model": "fake"})
    health = client.get("/health")
    ids = [r.headers["x-request-id"] for r in (ok, streamed, unknown, invalid, health)]
    assert len(set(ids)) == len(ids) and all(i.startswith("req-") for i in ids)
    assert (ok.status_code, streamed.status_code, unknown.status_code) == (200, 200, 404)
    assert invalid.status_code == 400
    [row] = row_of(client, ids[0])
    assert (row["request_id"], row["status"], row["target"]) == (ids[0], "ok", "fake")
    [row] = row_of(client, ids[1])
    assert row["status"] == "ok"
    [row] = row_of(client, ids[2])
    assert (row["status"], row["error"]) == ("refused", "model_not_found")
    # A body that never became a request names no tenant: no row.
    assert client.get(f"/admin/requests/{ids[3]}").json()["error"]["code"] == "request_not_found"


def test_a_clients_own_id_is_echoed_and_finds_every_request_that_sent_it(
    client: TestClient,
) -> None:
    sent = {"x-request-id": "trace-4bf92f35"}
    first = client.post("/v1/chat/completions", json=chat_body(), headers=sent)
    retry = client.post("/v1/chat/completions", json=chat_body(), headers=sent)
    for response in (first, retry):
        assert response.headers["x-request-id"] == "trace-4bf92f35"
    ours = {first.headers["x-cloudlet-request-id"], retry.headers["x-cloudlet-request-id"]}
    assert len(ours) == 2  # two requests, two rows: a reused id loses nothing
    deadline = time.monotonic() + 10
    rows = row_of(client, "trace-4bf92f35")
    while len(rows) < 2 and time.monotonic() < deadline:
        rows = row_of(client, "trace-4bf92f35")
    assert {r["request_id"] for r in rows} == ours
    assert {r["client_request_id"] for r in rows} == {"trace-4bf92f35"}
    [row] = row_of(client, first.headers["x-cloudlet-request-id"])
    assert row["client_request_id"] == "trace-4bf92f35"
    bad = client.post("/v1/chat/completions", json=chat_body(), headers={"x-request-id": "a b"})
    assert bad.headers["x-request-id"].startswith("req-")  # not well-formed: ours instead
    assert "x-cloudlet-request-id" not in bad.headers


def test_an_error_after_routing_says_where_it_ran(
    client: TestClient, chat_engine: FakeChatEngine
) -> None:
    chat_engine.fail_after = 1  # fails after the first word: the router chose "fake"
    broken = client.post("/v1/chat/completions", json=chat_body())
    assert broken.status_code == 500
    assert broken.headers["x-cloudlet-target"] == "fake"
    assert broken.headers["x-cloudlet-spilled"] == "false"
    [row] = row_of(client, broken.headers["x-request-id"])
    assert (row["status"], row["error"]) == ("error", "RuntimeError")
    chat_engine.fail_after = None
    chat_engine.fail_before = UpstreamError("upstream said no")
    refused = client.post("/v1/chat/completions", json=chat_body())
    assert refused.status_code == 502 and "x-cloudlet-target" not in refused.headers
    [row] = row_of(client, refused.headers["x-request-id"])
    assert (row["status"], row["error"], row["target"]) == ("error", "upstream_error", None)


def test_a_finished_request_leaves_nothing_for_the_garbage_collector(
    client: TestClient, chat_engine: FakeChatEngine
) -> None:
    """Its life and arrival (which point at each other) and what they hold are freed by
    reference counting once the response is out: the server can collect rarely."""
    client.post("/v1/chat/completions", json=chat_body())  # warm: caches filled once
    chat_engine.fail_after = 1
    client.post("/v1/chat/completions", json=chat_body())
    chat_engine.fail_after = None
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
        chat_engine.fail_after = 1  # an error answered after routing reads the life last
        assert client.post("/v1/chat/completions", json=chat_body()).status_code == 500
        gc.collect()
        left = {
            type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("cloudlet")
        }
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == set()
