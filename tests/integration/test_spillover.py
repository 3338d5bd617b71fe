"""Local-first spill-over through a real `cloudlet serve`, and a cloud budget that stops it.

The "local" capacity is a self-hosted OpenAI-compatible upstream behind the remote engine with
``parallel: 1`` (so it has a queue and a queue-wait estimate, as the llama.cpp engine does),
with a latency objective of 0 ms: while one request holds the local slot, the next one would
wait, so it spills to the fake cloud. Each spill costs more than half the budget, so the second
spill is refused: route ``spill-reject`` answers 429 saying the cloud budget is spent, route
``spill-queue`` waits for the local slot instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import FakeUpstream, Hold

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def ups() -> Iterator[dict[str, FakeUpstream]]:
    started = {
        "local": FakeUpstream(words=("local",)).start(),
        "cloud": FakeUpstream(words=("cloud",)).start(),
    }
    yield started
    for up in started.values():
        up.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ups: dict[str, FakeUpstream]
) -> Iterator[Server]:
    # One dollar per token; a request reserves the prompt's bound (2 bytes of "hi", 4 of "user",
    # 16 a message, 64 a request: 86) + 3 (max_tokens) = 89 and the fake cloud reports
    # 11 + 1 = 12 used: after one spill, 12 + 89 > 95 refuses the next.
    config = f"""
models:
  - name: local
    engine: openai
    url: {ups["local"].url}
    parallel: 1
    health_check: {{interval_s: 0}}
  - name: cloud
    engine: openai
    url: {ups["cloud"].url}
    cloud: true
    price: {{input_per_mtok: 1000000, output_per_mtok: 1000000}}
    health_check: {{interval_s: 0}}
routes:
  - name: spill-reject
    targets: [local, cloud]
    policy: local-first
    spill: {{max_queue_wait_ms: 0}}
    cloud_budget: {{per_day: 95, currency: USD, when_spent: reject}}
  - name: spill-queue
    targets: [local, cloud]
    policy: local-first
    spill: {{max_queue_wait_ms: 0}}
    cloud_budget: {{per_day: 95, currency: USD, when_spent: queue}}
"""
    srv = start_server(tmp_path_factory.mktemp("spill"), config)
    yield srv
    stop_server(srv)


def ask(server: Server, route: str) -> httpx.Response:
    body = {"model": route, "messages": HI, "max_tokens": 3}
    return httpx.post(server.v1 + "/chat/completions", json=body, timeout=60)


class HeldLocal:
    """A streaming request that holds the local slot until the upstream is released."""

    def __init__(self, server: Server, ups: dict[str, FakeUpstream], route: str) -> None:
        ups["local"].fail_next(Hold(after=1))
        self._ups = ups
        body = {"model": route, "messages": HI, "max_tokens": 3, "stream": True}
        self._ctx = httpx.stream("POST", server.v1 + "/chat/completions", json=body, timeout=60)
        self.response = self._ctx.__enter__()
        self._lines = self.response.iter_lines()
        for line in self._lines:  # up to the first token: the slot is now taken
            if line.startswith("data: ") and '"content":"local"' in line:
                break

    def finish(self) -> list[str]:
        self._ups["local"].release()
        rest = [line for line in self._lines if line.startswith("data: ")]
        self._ctx.__exit__(None, None, None)
        return rest


@pytest.mark.parametrize("route", ["spill-reject", "spill-queue"])
def test_spill_while_local_is_busy_then_the_budget_stops_it(
    server: Server, ups: dict[str, FakeUpstream], route: str
) -> None:
    warm = ask(server, route)  # local is idle: stays local (and teaches it a job duration)
    assert (warm.headers["x-cloudlet-target"], warm.headers["x-cloudlet-spilled"]) == (
        "local",
        "false",
    )
    held = HeldLocal(server, ups, route)
    assert held.response.headers["x-cloudlet-target"] == "local"

    spilled = ask(server, route)
    assert spilled.status_code == 200
    assert (spilled.headers["x-cloudlet-target"], spilled.headers["x-cloudlet-spilled"]) == (
        "cloud",
        "true",
    )
    assert spilled.json()["choices"][0]["message"]["content"] == "cloud"
    cloud_calls = len(ups["cloud"].calls())

    if route == "spill-reject":
        refused = ask(server, route)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        error = refused.json()["error"]
        assert error["code"] == "cloud_budget_exhausted" and "cloud budget" in error["message"]
        assert held.finish()[-1] == "data: [DONE]"
    else:
        queued: list[httpx.Response] = []
        waiter = threading.Thread(target=lambda: queued.append(ask(server, route)))
        waiter.start()
        waiter.join(0.5)
        assert not queued  # waiting for the local slot, not spilled
        assert held.finish()[-1] == "data: [DONE]"
        waiter.join(60)
        assert (
            queued[0].headers["x-cloudlet-target"],
            queued[0].headers["x-cloudlet-spilled"],
        ) == (
            "local",
            "false",
        )
        assert json.loads(queued[0].text)["choices"][0]["message"]["content"] == "local"
    assert len(ups["cloud"].calls()) == cloud_calls  # never a silent overspend
