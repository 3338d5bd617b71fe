"""A budget's hold is released on every path a request can end by, through a real
`cloudlet serve` with its counters in real Redis (behind a proxy the test can cut): the
client leaves mid-stream, the upstream sends negative, garbage or absurd usage counts, breaks
off mid-stream or fails before the first token, and Redis goes away between reserve and
settle. Each time both holds, the key's budget and the route's cloud budget, return to zero
and what was charged stays within what was reserved.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from redis import Redis

from cloudlet.domain import ChatMessage, GenerationRequest, ModelId
from cloudlet.domain.tokens import prompt_token_bound
from cloudlet.pricing import Price
from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import BadUsage, Drop, FakeUpstream, Fault, Hold, Status
from tests.tcp_proxy import TcpProxy
from tests.unit.counters.backends import REDIS

pytestmark = pytest.mark.slow

ADMIN = "admin-secret-for-hold-tests"
PROMPT = "你好, 世界 😀"
MAX_TOKENS = 8
PRICE = Price(Decimal("0.1"), Decimal("0.2"))
RESERVED = PRICE.worst_case(
    prompt_token_bound(
        GenerationRequest(model=ModelId("x"), messages=(ChatMessage("user", PROMPT),))
    ),
    MAX_TOKENS,
).nanos


@dataclass
class Setup:
    server: Server
    cloud: FakeUpstream
    proxy: TcpProxy
    redis: Redis
    route: str
    key: str
    key_id: str

    def holds(self) -> dict[str, tuple[int, int]]:
        """(spent, held) in nanos of the key's budget and of the route's."""
        now = datetime.now(UTC)
        key_budget = f"cloudlet:{{{self.key_id}}}:budget:month:{now:%Y-%m}"
        route_budget = f"cloudlet:route-budget:{{{self.route}:{now:%Y-%m-%d}}}"
        out = {}
        for name, redis_key in (("key", key_budget), ("route", route_budget)):
            spent, held = self.redis.hmget(redis_key, ["spent", "held"])
            out[name] = (int(spent or 0), int(held or 0))
        return out

    def released(self, before: dict[str, tuple[int, int]]) -> dict[str, int]:
        """Wait until both holds are back to zero; what each budget was charged since."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = self.holds()
            if all(held == 0 for _, held in now.values()):
                return {name: now[name][0] - before[name][0] for name in now}
            time.sleep(0.1)
        raise AssertionError(f"holds not released: {self.holds()}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    cloud = FakeUpstream(words=("w",) * 20, record=False).start()
    local = FakeUpstream(words=("local",), record=False).start()
    host_port = REDIS.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = TcpProxy(host, int(port)).start()
    route = f"holds-{int(time.time() * 1000)}"
    config = f"""
storage: {{counters: "redis://127.0.0.1:{proxy.port}/0"}}
models:
  - name: cloud
    engine: openai
    url: {cloud.url}
    cloud: true
    price: {{input_per_mtok: 0.1, output_per_mtok: 0.2}}
    health_check: {{interval_s: 0}}
    breaker: {{failures: 100}}
  - name: local
    engine: openai
    url: {local.url}
    health_check: {{interval_s: 0}}
routes:
  - name: {route}
    targets: [cloud, local]
    policy: fallback
    cloud_budget: {{per_day: 1, currency: USD, when_spent: reject}}
"""
    server = start_server(tmp_path_factory.mktemp("holds"), config, {"CLOUDLET_ADMIN_KEY": ADMIN})
    redis = Redis.from_url(REDIS)
    created = httpx.post(
        server.base_url + "/admin/keys",
        json={"team": "t", "budget": "1"},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=30,
    ).json()
    try:
        yield Setup(server, cloud, proxy, redis, route, created["key"], created["id"])
    finally:
        stop_server(server)
        for found in redis.scan_iter(match=f"cloudlet:*{route}*"):
            redis.delete(found)
        for found in redis.scan_iter(match=f"cloudlet:{{{created['id']}}}:*"):
            redis.delete(found)
        redis.close()
        proxy.stop()
        cloud.stop()
        local.stop()


def body(s: Setup, stream: bool = False) -> dict[str, Any]:
    return {
        "model": s.route,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "stream": stream,
    }


def post(s: Setup, stream: bool = False) -> httpx.Response:
    return httpx.post(
        s.server.v1 + "/chat/completions",
        json=body(s, stream),
        headers={"Authorization": f"Bearer {s.key}"},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("fault", "status", "target"),
    [
        # malformed usage makes the reply malformed (a 502 after the first token): not charged
        # beyond the hold, and the hold is released
        (BadUsage({"prompt_tokens": -5, "completion_tokens": -3}), 502, None),
        (BadUsage({"prompt_tokens": "many", "completion_tokens": None}), 502, None),
        (BadUsage([1, 2]), 502, None),
        (BadUsage({"prompt_tokens": 10**8, "completion_tokens": 10**8}), 200, "cloud"),
        (Status(500), 200, "local"),  # failed before the first token: fails over, cloud released
    ],
    ids=["negative-usage", "garbage-usage", "not-an-object", "absurd-usage", "upstream-500"],
)
def test_upstream_faults_release_the_holds(
    setup: Setup, fault: Fault, status: int, target: str | None
) -> None:
    before = setup.holds()
    setup.cloud.fail_next(fault)
    r = post(setup)
    assert r.status_code == status, r.text
    if target is not None:
        assert r.headers["x-cloudlet-target"] == target
    charged = setup.released(before)
    assert 0 <= charged["key"] <= RESERVED
    assert 0 <= charged["route"] <= RESERVED
    if target == "local":
        assert charged["route"] == 0


def test_a_stream_broken_off_upstream_releases_the_holds(setup: Setup) -> None:
    before = setup.holds()
    setup.cloud.fail_next(Drop(after=2))
    r = post(setup, stream=True)
    assert r.status_code == 200  # the stream had begun; it ends with an error event
    assert '"error"' in r.text
    charged = setup.released(before)
    assert 0 < charged["key"] <= RESERVED and 0 < charged["route"] <= RESERVED


def test_a_client_that_leaves_releases_the_holds(setup: Setup) -> None:
    before = setup.holds()
    setup.cloud.fail_next(Hold(after=2))
    with httpx.stream(
        "POST",
        setup.server.v1 + "/chat/completions",
        json=body(setup, stream=True),
        headers={"Authorization": f"Bearer {setup.key}"},
        timeout=60,
    ) as response:
        for line in response.iter_lines():
            if '"content":"w"' in line:
                break  # the client goes away here
    setup.cloud.release()
    charged = setup.released(before)
    assert 0 < charged["key"] <= RESERVED and 0 < charged["route"] <= RESERVED


def test_redis_gone_between_reserve_and_settle_then_back(setup: Setup) -> None:
    before = setup.holds()
    setup.cloud.fail_next(Hold(after=1))
    with httpx.stream(
        "POST",
        setup.server.v1 + "/chat/completions",
        json=body(setup, stream=True),
        headers={"Authorization": f"Bearer {setup.key}"},
        timeout=60,
    ) as response:
        lines = response.iter_lines()
        for line in lines:
            if '"content":"w"' in line:
                break
        held = setup.holds()
        assert held["key"][1] > 0 and held["route"][1] > 0  # reserved, not settled
        setup.proxy.cut()  # Redis is unreachable from here
        setup.cloud.release()
        rest = [line for line in lines if line]
    assert response.status_code == 200
    assert rest[-1] == "data: [DONE]" and not any('"error"' in line for line in rest)
    time.sleep(1.0)  # the settle failed and is being retried
    assert setup.holds()["key"][1] > 0  # still held: the settle could not reach Redis
    setup.proxy.restore()
    charged = setup.released(before)
    assert 0 < charged["key"] <= RESERVED and 0 < charged["route"] <= RESERVED
