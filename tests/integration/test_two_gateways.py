"""Two `cloudlet serve` processes sharing one PostgreSQL ledger and one Redis: one key, one limit.

What a second gateway replica does in production: a key created through one is accepted by the
other, the key's rate limit holds across both (neither can take what the other took), and the
usage both record is one ledger, seen alike from either.
"""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import FakeUpstream
from tests.unit.counters.backends import REDIS
from tests.unit.ledger.stores import POSTGRES

pytestmark = pytest.mark.slow
ADMIN = "admin-secret-for-two-gateways"
RPM = 4  # refills one request per 15 s: none during the test


@pytest.fixture
def schema() -> Iterator[str]:
    name = "twogw_" + secrets.token_hex(4)
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream().start()
    yield up
    up.stop()


def config(upstream: FakeUpstream, schema: str) -> str:
    return f"""
server: {{log_level: warning}}
storage:
  ledger: "{POSTGRES}?schema={schema}"
  counters: "{REDIS}"
models:
  - name: m
    engine: openai
    url: {upstream.url}
"""


def chat(server: Server, key: str) -> int:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.post(server.v1 + "/chat/completions", json=body, headers=headers, timeout=30)
    return response.status_code


def test_a_key_and_its_limit_are_shared_by_two_gateways(
    tmp_path: Path, upstream: FakeUpstream, schema: str
) -> None:
    spec = config(upstream, schema)
    env = {"CLOUDLET_ADMIN_KEY": ADMIN}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_server(tmp_path / "a", spec, env)
    b = start_server(tmp_path / "b", spec, env)
    admin = {"Authorization": f"Bearer {ADMIN}"}

    def rows(server: Server) -> dict[str, int]:
        """The team's ledger rows by status."""
        text = httpx.get(
            server.base_url + "/admin/usage", params={"format": "csv"}, headers=admin
        ).text
        found = [r["status"] for r in csv.DictReader(io.StringIO(text)) if r["team"] == "shared"]
        return dict(Counter(found))

    try:
        created = httpx.post(
            a.base_url + "/admin/keys", json={"team": "shared", "rpm": RPM}, headers=admin
        )
        assert created.status_code == 201
        key = created.json()["key"]

        statuses = [chat(server, key) for _ in range(RPM) for server in (a, b)]
        assert sorted(statuses) == [200] * RPM + [429] * RPM
        assert len(upstream.calls()) == RPM  # refused requests never reached the upstream

        # Each gateway writes its rows in batches (at most 200 ms behind): wait for all eight.
        deadline = time.monotonic() + 30
        while sum(rows(a).values()) < 2 * RPM and time.monotonic() < deadline:
            time.sleep(0.1)
        # Refused requests are rows too, of cost 0: every request of a known key has one.
        assert rows(a) == {"ok": RPM, "refused": RPM}
        assert rows(b) == rows(a)  # one ledger, whichever gateway is asked
    finally:
        stop_server(a)
        stop_server(b)
