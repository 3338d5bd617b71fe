"""Budgets cannot be overspent: 100 concurrent requests at a budget's edge, through a real
`cloudlet serve`, with CJK, emoji and ASCII prompts, across a restart, by route and by the cloud
model's own name. The fake cloud counts prompt tokens like the worst tokenizer there is (one
token per UTF-8 byte, plus ChatML's special tokens) and always generates ``max_tokens``.

Before the fix, reservations estimated four characters a token (a CJK character is up to three
tokens, an emoji four), a restart forgot what a route had spent, and naming the cloud model
skipped the route's budget: each of these overspent several times over.
"""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import FakeUpstream
from tests.unit.counters.backends import REDIS
from tests.unit.ledger.stores import drop_ledger, new_ledger_url

pytestmark = pytest.mark.slow

ADMIN = "admin-secret-for-budget-tests"
PROMPTS = {
    "cjk": "你好世界" * 50,  # 200 characters, 600 bytes: 50 tokens by the old estimate
    "emoji": "😀🎉👍" * 50,  # 150 characters, 600 bytes
    "ascii": "The quick brown fox jumps. " * 8,
}
MAX_TOKENS = 20
# Dollars per million tokens: a CJK request costs about $0.000065 and reserves $0.000073.
PRICE = "{input_per_mtok: 0.1, output_per_mtok: 0.2}"


def worst_tokenizer(body: Any) -> int:
    """One token per byte of every message, ChatML's 5 per message and 3 for the reply."""
    messages = body.get("messages") or []
    return sum(len(m["content"].encode()) + 5 for m in messages) + 3


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeUpstream]:
    up = FakeUpstream(words=("w",) * 100, record=False, prompt_tokens=worst_tokenizer).start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def local() -> Iterator[FakeUpstream]:
    up = FakeUpstream(words=("local",), record=False).start()
    yield up
    up.stop()


def config(
    cloud: FakeUpstream, local: FakeUpstream, routes: str = "", counters: str = "", ledger: str = ""
) -> str:
    parts = [f"counters: '{counters}'"] * bool(counters) + [f"ledger: '{ledger}'"] * bool(ledger)
    storage = f"storage: {{{', '.join(parts)}}}\n" if parts else ""
    return f"""{storage}models:
  - name: cloud
    engine: openai
    url: {cloud.url}
    cloud: true
    price: {PRICE}
    health_check: {{interval_s: 0}}
  - name: local
    engine: openai
    url: {local.url}
    health_check: {{interval_s: 0}}
{routes}"""


def admin(server: Server, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    return httpx.request(method, server.base_url + path, headers=headers, timeout=30, **kw)


def usage_rows(server: Server) -> list[dict[str, str]]:
    text = admin(server, "GET", "/admin/usage", params={"format": "csv"}).text
    return list(csv.DictReader(io.StringIO(text)))


async def burst(server: Server, key: str, models: list[str], n: int) -> list[httpx.Response]:
    """``n`` concurrent requests, cycling through the scripts and ``models``."""
    scripts = list(PROMPTS.values())
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            body = {
                "model": models[i % len(models)],
                "messages": [{"role": "user", "content": scripts[i % len(scripts)]}],
                "max_tokens": MAX_TOKENS,
            }
            return await client.post(
                server.v1 + "/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            )

        return await asyncio.gather(*(one(i) for i in range(n)))


def settled(server: Server, rows: int) -> list[dict[str, str]]:
    """The ledger's rows once ``rows`` answered ones are written (the writer batches)."""
    for _ in range(100):
        found = usage_rows(server)
        if sum(r["status"] == "ok" for r in found) >= rows:
            return found
        asyncio.run(asyncio.sleep(0.1))
    raise AssertionError(f"expected {rows} answered ledger rows, found {len(found)} rows")


def spent(rows: list[dict[str, str]], **match: str) -> Decimal:
    return sum(
        (Decimal(r["cost"]) for r in rows if all(r[k] == v for k, v in match.items())), Decimal(0)
    )


@pytest.mark.parametrize(("database", "counters"), [("sqlite", "memory"), ("postgresql", "redis")])
def test_a_key_budget_holds_at_the_edge_across_a_restart(
    tmp_path: Path, cloud: FakeUpstream, local: FakeUpstream, database: str, counters: str
) -> None:
    budget = Decimal("0.0005")  # about seven requests' worth
    env = {"CLOUDLET_ADMIN_KEY": ADMIN}
    ledger = new_ledger_url(database, tmp_path) if database == "postgresql" else ""
    spec = config(cloud, local, counters=REDIS if counters == "redis" else "", ledger=ledger)
    key_ids: list[str] = []
    try:
        _key_budget_round_trip(tmp_path, spec, env, budget, key_ids)
    finally:
        if ledger:
            asyncio.run(drop_ledger(ledger))
        if counters == "redis":
            client = Redis.from_url(REDIS)
            for key_id in key_ids:
                for found in client.scan_iter(match=f"cloudlet:{{{key_id}}}:*"):
                    client.delete(found)
            client.close()


def _key_budget_round_trip(
    tmp_path: Path, spec: str, env: dict[str, str], budget: Decimal, key_ids: list[str]
) -> None:
    server = start_server(tmp_path, spec, env)
    try:
        created = admin(server, "POST", "/admin/keys", json={"team": "t", "budget": str(budget)})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        key_ids.append(created.json()["id"])
        first = asyncio.run(burst(server, key, ["cloud"], 50))
        ok = sum(r.status_code == 200 for r in first)
        assert ok >= 1 and all(r.status_code in (200, 429) for r in first)
        assert {r.json()["error"]["code"] for r in first if r.status_code == 429} == {
            "budget_exceeded"
        }
        settled(server, ok)
    finally:
        stop_server(server)
    server = start_server(tmp_path, spec, env)  # same ledger
    try:
        second = asyncio.run(burst(server, key, ["cloud"], 50))
        ok += sum(r.status_code == 200 for r in second)
        rows = settled(server, ok)
    finally:
        stop_server(server)
    total = spent(rows)
    assert total <= budget, f"overspent: {total} > {budget}"
    # At the edge: what is left would not cover one more CJK request's reservation.
    assert budget - total < Decimal("0.0000724")
    # the refused ones have their rows too, at no cost
    assert {r["status"] for r in rows} == {"ok", "refused"}
    assert spent(rows, status="refused") == 0


@pytest.mark.parametrize("counters", ["memory", "redis"])
def test_a_route_budget_holds_by_route_and_by_name_across_a_restart(
    tmp_path: Path, cloud: FakeUpstream, local: FakeUpstream, counters: str
) -> None:
    route = f"chat-{secrets.token_hex(4)}"  # Redis keys are named after the route
    budget = Decimal("0.0005")
    routes = f"""routes:
  - name: {route}
    targets: [cloud, local]
    policy: fallback
    cloud_budget: {{per_day: {budget}, currency: USD, when_spent: reject}}
"""
    url = REDIS if counters == "redis" else ""
    env = {"CLOUDLET_ADMIN_KEY": ADMIN}
    try:
        total_ok = 0
        for _ in range(2):  # the second round runs after a restart
            server = start_server(tmp_path, config(cloud, local, routes, url), env)
            try:
                responses = asyncio.run(burst(server, ADMIN, [route, "cloud"], 100))
                total_ok += sum(r.status_code == 200 for r in responses)
                refused = [r for r in responses if r.status_code != 200]
                assert refused, "the burst should reach the budget's edge"
                assert {r.json()["error"]["code"] for r in refused} == {"cloud_budget_exhausted"}
                rows = settled(server, total_ok)
            finally:
                stop_server(server)
        on_cloud = spent(rows, target="cloud")
        assert on_cloud <= budget, f"overspent: {on_cloud} > {budget}"
        assert budget - on_cloud < Decimal("0.0000724")
        by_name = [r for r in rows if r["target"] == "cloud" and r["route"] == ""]
        assert by_name, "requests by the cloud model's name were charged to the budget too"
    finally:
        if counters == "redis":
            client = Redis.from_url(REDIS)
            for found in client.scan_iter(match=f"cloudlet:route-budget:{{{route}:*"):
                client.delete(found)
            client.close()
