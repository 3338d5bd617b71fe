"""Metrics, traces and the access log of a real `cloudlet serve`, from known traffic.

The "local" capacity is a self-hosted OpenAI-compatible upstream with ``parallel: 1`` and the
cloud a fake cloud provider (as in test_spillover.py): while one request holds the local slot
the next spills to the cloud, and a spill costs more than half the route's cloud budget, so
the one after is refused. `/metrics` is read with the Prometheus parser and its counters and
histogram counts checked exactly; the server's log is searched for the access lines, and for
what must never be in it. Traces go over OTLP/HTTP to an in-process receiver
(tests/otlp_receiver.py) from a server configured by the standard OTEL_* variables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import FakeUpstream, Hold, Status
from tests.otlp_receiver import OtlpReceiver

ADMIN = "admin-key-never-logged-5e5e"
SECRET = "the password is swordfish"
HI = [{"role": "user", "content": SECRET}]
# One dollar per token. A spill reserves the prompt's bound (25 bytes of SECRET, 4 of "user",
# 16 a message, 64 a request: 109) + 3 (max_tokens) = 112 and the fake cloud reports 11 + 2 =
# 13 used: after one spill, 13 + 112 > 120 refuses the next.
CONFIG = """
models:
  - name: local
    engine: openai
    url: {local}
    parallel: 1
    health_check: {{interval_s: 0}}
  - name: cloud
    engine: openai
    url: {cloud}
    cloud: true
    price: {{input_per_mtok: 1000000, output_per_mtok: 1000000}}
    health_check: {{interval_s: 0}}
routes:
  - name: chat
    targets: [local, cloud]
    policy: local-first
    spill: {{max_queue_wait_ms: 0}}
    cloud_budget: {{per_day: 120, currency: USD, when_spent: reject}}
"""


@pytest.fixture(scope="module")
def ups() -> Iterator[dict[str, FakeUpstream]]:
    started = {
        "local": FakeUpstream(words=("lo", "cal")).start(),
        "cloud": FakeUpstream(words=("clo", "ud")).start(),
    }
    yield started
    for up in started.values():
        up.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, ups: dict[str, FakeUpstream]
) -> Iterator[Server]:
    config = CONFIG.format(local=ups["local"].url, cloud=ups["cloud"].url)
    srv = start_server(tmp_path_factory.mktemp("observe"), config, {"CLOUDLET_ADMIN_KEY": ADMIN})
    yield srv
    stop_server(srv)


def new_key(server: Server, team: str) -> str:
    r = httpx.post(
        server.base_url + "/admin/keys",
        json={"team": team},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def ask(server: Server, key: str, model: str = "chat", **extra: object) -> httpx.Response:
    body = {"model": model, "messages": HI, "max_tokens": 3, **extra}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(server.v1 + "/chat/completions", json=body, headers=headers, timeout=60)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Server) -> Samples:
    r = httpx.get(server.base_url + "/metrics", timeout=30)
    assert r.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def select(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """``{label values: value}`` of metric ``name`` (dropping zero-valued samples)."""
    out = {}
    for (sample, pairs), value in samples.items():
        if sample == name and value:
            found = dict(pairs)
            out[tuple(found.get(label, "") for label in labels)] = value
    return out


def test_known_traffic_counts_exactly_in_metrics_and_the_access_log(
    server: Server, ups: dict[str, FakeUpstream]
) -> None:
    key = new_key(server, "alpha")
    ids = []
    for _ in range(2):  # the local slot is free: served locally
        r = ask(server, key)
        assert (r.status_code, r.headers["x-cloudlet-target"]) == (200, "local")
        ids.append(r.headers["x-request-id"])

    ups["local"].fail_next(Hold(after=1))  # a stream that holds the one local slot
    body = {"model": "chat", "messages": HI, "max_tokens": 3, "stream": True}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST", server.v1 + "/chat/completions", json=body, headers=headers, timeout=60
    ) as held:
        lines = held.iter_lines()
        for line in lines:
            if '"content":"lo"' in line:
                break
        spilled = ask(server, key)
        assert (spilled.status_code, spilled.headers["x-cloudlet-spilled"]) == (200, "true")
        refused = ask(server, key)  # the budget cannot take a second spill
        assert refused.status_code == 429
        ups["local"].release()
        assert [x for x in lines if x.startswith("data: ")][-1] == "data: [DONE]"
    ids += [held.headers["x-request-id"], spilled.headers["x-request-id"]]
    missing = ask(server, key, model="no-such-model")
    assert missing.status_code == 404
    refused_code = refused.json()["error"]["code"]

    s = scrape(server)
    assert select(s, "cloudlet_requests_total", "model", "target", "status", "error") == {
        ("chat", "local", "ok", ""): 3,
        ("chat", "cloud", "ok", ""): 1,
        ("chat", "", "refused", refused_code): 1,
        ("_unknown", "", "refused", "model_not_found"): 1,
    }
    by_target = ("model", "target")
    assert select(s, "cloudlet_time_to_first_token_seconds_count", *by_target) == {
        ("chat", "local"): 3,
        ("chat", "cloud"): 1,
    }
    # Two output tokens each: one time-per-token each (after the first token).
    assert select(s, "cloudlet_time_per_output_token_seconds_count", *by_target) == {
        ("chat", "local"): 3,
        ("chat", "cloud"): 1,
    }
    assert select(s, "cloudlet_request_duration_seconds_count", *by_target) == {
        ("chat", "local"): 3,
        ("chat", "cloud"): 1,
    }
    # Every request that finished has a queue time (the wait for the local slot; none to wait
    # for in front of the cloud, which counts as zero).
    assert select(s, "cloudlet_request_queue_time_seconds_count", *by_target) == {
        ("chat", "local"): 3,
        ("chat", "cloud"): 1,
    }
    assert select(s, "cloudlet_prompt_tokens_total", *by_target) == {
        ("chat", "local"): 33,
        ("chat", "cloud"): 11,
    }
    assert select(s, "cloudlet_generation_tokens_total", *by_target) == {
        ("chat", "local"): 6,
        ("chat", "cloud"): 2,
    }
    assert select(s, "cloudlet_spilled_requests_total", "route", "target") == {("chat", "cloud"): 1}
    costs = select(s, "cloudlet_cost_total", "target", "location", "currency")
    assert costs[("cloud", "cloud", "USD")] == 13  # 11 + 2 tokens at a dollar each
    assert set(costs) <= {("cloud", "cloud", "USD"), ("local", "local", "USD")}
    assert select(s, "cloudlet_cloud_budget_remaining", "route", "currency") == {
        ("chat", "USD"): 120 - 13
    }

    log = server.output()
    access = [line for line in log.splitlines() if " access request_id=" in line]
    assert len(access) == 6
    for request_id in ids:
        (line,) = [a for a in access if f"request_id={request_id} " in a]
        assert " team=alpha" in line
    assert any("status=refused" in a and f"error={refused_code}" in a for a in access)
    assert SECRET not in log and "swordfish" not in log
    assert key not in log and ADMIN not in log


@pytest.fixture
def failing_first() -> Iterator[dict[str, FakeUpstream]]:
    started = {
        "first": FakeUpstream(default=Status(503)).start(),
        "second": FakeUpstream(words=("a", "b", "c")).start(),
    }
    yield started
    for up in started.values():
        up.stop()


def test_a_failover_is_traced_and_the_upstream_joins_the_trace(
    tmp_path_factory: pytest.TempPathFactory, failing_first: dict[str, FakeUpstream]
) -> None:
    receiver = OtlpReceiver().start()
    config = f"""
server: {{log_format: json}}
storage: {{ledger: "off"}}
models:
  - name: first
    engine: openai
    url: {failing_first["first"].url}
    health_check: {{interval_s: 0}}
  - name: second
    engine: openai
    url: {failing_first["second"].url}
    health_check: {{interval_s: 0}}
routes:
  - name: chat
    targets: [first, second]
    retry: {{backoff_ms: 0}}
"""
    endpoint = receiver.endpoint
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    srv = start_server(tmp_path_factory.mktemp("traced"), config, env)
    client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    client_span = "00f067aa0ba902b7"
    try:
        r = httpx.post(
            srv.v1 + "/chat/completions",
            json={"model": "chat", "messages": HI, "max_tokens": 3, "temperature": 0.25},
            headers={"traceparent": f"00-{client_trace}-{client_span}-01"},
            timeout=60,
        )
        assert (r.status_code, r.headers["x-cloudlet-target"]) == (200, "second")
        spans = receiver.wait_for(3)
    finally:
        stop_server(srv)
        receiver.stop()
    log = srv.output()
    assert f"tracing: OTLP to {endpoint}/v1/traces" in " ".join(log.split())  # the banner

    named = {span.name: span for span in spans}
    assert sorted(named) == ["chat chat", "chat first", "chat second"]
    request, failed, served = named["chat chat"], named["chat first"], named["chat second"]
    assert (request.kind, failed.kind, served.kind) == ("server", "client", "client")
    assert {s.trace_id for s in spans} == {client_trace}  # the client's trace, continued
    assert request.parent_span_id == client_span
    assert failed.parent_span_id == served.parent_span_id == request.span_id
    assert request.service == "cloudlet"
    assert failed.status == "error" and failed.attributes["error.type"]
    assert served.status == "unset" and "error.type" not in served.attributes
    assert served.attributes["gen_ai.provider.name"] == "openai"
    assert request.attributes["gen_ai.operation.name"] == "chat"
    assert request.attributes["gen_ai.request.model"] == "chat"
    assert request.attributes["gen_ai.request.max_tokens"] == 3
    assert request.attributes["gen_ai.request.temperature"] == 0.25
    assert request.attributes["gen_ai.response.model"] == "second"
    assert request.attributes["gen_ai.response.id"] == r.headers["x-request-id"]
    assert request.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert request.attributes["gen_ai.usage.input_tokens"] == 11
    assert request.attributes["gen_ai.usage.output_tokens"] == 3
    assert request.attributes["cloudlet.route"] == "chat"
    assert request.attributes["cloudlet.spilled"] is True  # not the route's first choice
    assert r.headers["x-cloudlet-spilled"] == "true"
    for span in spans:
        assert SECRET not in json.dumps(span.attributes, default=str)

    # Each upstream got its own attempt's context: the trace is one, the parent is its span.
    (to_first,) = failing_first["first"].calls()
    (to_second,) = failing_first["second"].calls()
    assert to_first.headers["traceparent"].split("-")[1:3] == [client_trace, failed.span_id]
    assert to_second.headers["traceparent"].split("-")[1:3] == [client_trace, served.span_id]

    # The server's log is JSON, one object per line, the access line among them.
    objects = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    (access,) = [o for o in objects if o.get("request_id") == r.headers["x-request-id"]]
    assert (access["target"], access["status"], access["http_status"]) == ("second", "ok", 200)
    assert SECRET not in log
