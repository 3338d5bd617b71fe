"""The Prometheus sink: exact counts from known records, read back through the parser."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cloudlet.config.remote import CloudBudgetSpec
from cloudlet.gateway.budget import CloudBudget, InMemoryBudgetStore
from cloudlet.gateway.record import RequestRecord
from cloudlet.observe.metrics import (
    DURATION_BUCKETS,
    QUEUE_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    BudgetGauge,
    RequestMetrics,
)
from cloudlet.pricing import Money
from tests.unit.observe.records import record, refused

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def test_bucket_edges_are_the_genai_conventions() -> None:
    assert TTFT_BUCKETS == (
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
    )  # fmt: skip
    assert TPOT_BUCKETS == (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
    assert [round(b, 2) for b in DURATION_BUCKETS] == [
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
    ]  # fmt: skip


def test_known_records_give_exact_counts() -> None:
    registry = CollectorRegistry()
    sink = RequestMetrics(registry, ["chat", "local", "cloud"])
    cloud = {"target": "cloud", "provider": "openai", "cloud": True}
    sink.record(record())  # ok, 5 tokens: a TTFT and a time per output token
    sink.record(record(completion_tokens=1, ttft_s=0.002))  # one token: no time per token
    sink.record(
        record(
            **cloud,
            spilled=True,
            cost=Money(Decimal("0.00005"), "USD"),
            cloud_equivalent=Money(Decimal("0.00005"), "USD"),
        )
    )
    sink.record(refused())
    sink.record(refused("model_not_found", 404, model="no-such-model"))
    sink.record(
        record(
            **cloud,
            status="error",
            error="upstream_error",
            http_status=502,
            ttft_s=None,
            completion_tokens=0,
            cost=Money(Decimal(0), "USD"),
            cloud_equivalent=Money(Decimal(0), "USD"),
        )
    )
    sink.record(record(status="cancelled", error="cancelled", http_status=499))

    s = scrape(registry)
    requests = {
        tuple(dict(labels)[k] for k in ("model", "target", "status", "error")): v
        for (name, labels), v in s.items()
        if name == "cloudlet_requests_total"
    }
    assert requests == {
        ("chat", "local", "ok", ""): 2,
        ("chat", "cloud", "ok", ""): 1,
        ("chat", "", "refused", "rate_limit_exceeded"): 1,
        ("_unknown", "", "refused", "model_not_found"): 1,
        ("chat", "cloud", "error", "upstream_error"): 1,
        ("chat", "local", "cancelled", "cancelled"): 1,
    }
    assert not any("no-such-model" in dict(labels).values() for _, labels in s)

    ttft = "cloudlet_time_to_first_token_seconds"
    assert value(s, ttft + "_count", model="chat", target="local") == 2  # not the cancelled one
    assert value(s, ttft + "_count", model="chat", target="cloud") == 1
    assert value(s, ttft + "_bucket", model="chat", target="local", le="0.005") == 1
    assert value(s, ttft + "_sum", model="chat", target="local") == pytest.approx(0.052)
    tpot = "cloudlet_time_per_output_token_seconds"
    assert value(s, tpot + "_count", model="chat", target="local") == 1
    assert value(s, tpot + "_sum", model="chat", target="local") == pytest.approx(0.1)
    assert value(s, tpot + "_count", model="chat", target="cloud") == 1
    duration = "cloudlet_request_duration_seconds"
    assert value(s, duration + "_count", model="chat", target="local") == 3
    assert value(s, duration + "_count", model="chat", target="cloud") == 2
    assert (duration + "_count", frozenset({("model", "chat"), ("target", "")})) not in s

    assert value(s, "cloudlet_prompt_tokens_total", model="chat", target="local") == 27
    assert value(s, "cloudlet_prompt_tokens_total", model="chat", target="cloud") == 18
    assert value(s, "cloudlet_generation_tokens_total", model="chat", target="local") == 11
    assert value(s, "cloudlet_generation_tokens_total", model="chat", target="cloud") == 5
    cost = "cloudlet_cost_total"
    assert value(s, cost, target="local", location="local", currency="USD") == pytest.approx(6e-6)
    assert value(s, cost, target="cloud", location="cloud", currency="USD") == pytest.approx(5e-5)
    equivalent = "cloudlet_cloud_equivalent_cost_total"
    assert value(s, equivalent, target="local", currency="USD") == pytest.approx(3e-5)
    assert value(s, equivalent, target="cloud", currency="USD") == pytest.approx(5e-5)
    assert value(s, "cloudlet_spilled_requests_total", route="chat", target="cloud") == 1
    assert sum(v for (n, _), v in s.items() if n == "cloudlet_spilled_requests_total") == 1


def test_record_reuses_its_label_children() -> None:
    registry = CollectorRegistry()
    sink = RequestMetrics(registry, ["chat"])
    for _ in range(3):
        sink.record(record())
    ok = {"model": "chat", "target": "local", "status": "ok", "error": ""}
    assert value(scrape(registry), "cloudlet_requests_total", **ok) == 3
    assert len(sink._outcomes) == 1 and len(sink._targets) == 1 and len(sink._costs) == 1


def budget(store: InMemoryBudgetStore, limit: str) -> CloudBudget:
    spec = CloudBudgetSpec(per_day=Decimal(limit), currency="USD")
    return CloudBudget("chat", spec, store, clock=lambda: 1_765_000_000.0, targets=["cloud"])


def remaining(registry: CollectorRegistry) -> float:
    return value(scrape(registry), "cloudlet_cloud_budget_remaining", route="chat", currency="USD")


async def test_budget_gauge_reads_what_the_route_spent_at_refresh() -> None:
    store = InMemoryBudgetStore()
    chat = budget(store, "20")

    async def spent(route: str) -> Money | None:
        assert route == "chat"
        return await chat.spent()

    registry = CollectorRegistry()
    gauge = BudgetGauge({"chat": Money(Decimal(20), "USD")}, spent)
    registry.register(gauge)
    assert "cloudlet_cloud_budget_remaining" not in names(scrape(registry))  # not read yet
    await gauge.refresh()
    assert remaining(registry) == 20
    held = await chat.reserve(Money(Decimal("3.5"), "USD"))
    assert held is not None
    await gauge.refresh()  # a hold counts as spent until it settles
    assert remaining(registry) == 16.5
    await chat.settle(held, Money(Decimal("1.25"), "USD"))
    await gauge.refresh()
    assert remaining(registry) == 18.75


async def test_budget_gauge_leaves_out_a_route_it_cannot_read() -> None:
    async def down(route: str) -> Money | None:
        if route == "slow":
            await asyncio.sleep(10)
        raise ConnectionError("redis is down")

    gauge = BudgetGauge(
        {"chat": Money(Decimal(5), "USD"), "slow": Money(Decimal(5), "USD")}, down, timeout_s=0.05
    )
    registry = CollectorRegistry()
    registry.register(gauge)
    await gauge.refresh()
    assert "cloudlet_cloud_budget_remaining" not in names(scrape(registry))
    assert gauge.remaining("chat") is None and gauge.remaining("slow") is None


class _Reference:
    """The same metrics counted by prometheus_client's own Counter and Histogram: the oracle
    for RequestMetrics, which counts in plain numbers and makes the families at scrape time."""

    def __init__(self, registry: CollectorRegistry, names: list[str]) -> None:
        self.names = set(names)
        mt = ["model", "target"]
        self.requests = Counter(
            "cloudlet_requests", "-", [*mt, "status", "error"], registry=registry
        )
        edges = {
            "ttft": ("cloudlet_time_to_first_token_seconds", TTFT_BUCKETS),
            "tpot": ("cloudlet_time_per_output_token_seconds", TPOT_BUCKETS),
            "duration": ("cloudlet_request_duration_seconds", DURATION_BUCKETS),
            "queue": ("cloudlet_request_queue_time_seconds", QUEUE_BUCKETS),
        }
        self.histograms = {
            kind: Histogram(name, "-", mt, registry=registry, buckets=buckets)
            for kind, (name, buckets) in edges.items()
        }
        self.prompt = Counter("cloudlet_prompt_tokens", "-", mt, registry=registry)
        self.generation = Counter("cloudlet_generation_tokens", "-", mt, registry=registry)
        self.cost = Counter(
            "cloudlet_cost", "-", ["target", "location", "currency"], registry=registry
        )
        self.equivalent = Counter(
            "cloudlet_cloud_equivalent_cost", "-", ["target", "currency"], registry=registry
        )
        self.spilled = Counter(
            "cloudlet_spilled_requests", "-", ["route", "target"], registry=registry
        )

    def record(self, r: RequestRecord) -> None:
        model = r.model if r.model in self.names else "_unknown"
        target = r.target or ""
        self.requests.labels(model, target, r.status, r.error or "").inc()
        if r.status == "refused":
            return
        self.histograms["duration"].labels(model, target).observe(r.duration_s)
        if r.queue_s is not None:
            self.histograms["queue"].labels(model, target).observe(r.queue_s)
        ttft, tpot = (
            self.histograms["ttft"].labels(model, target),
            self.histograms["tpot"].labels(model, target),
        )
        if r.status == "ok" and r.ttft_s is not None:
            ttft.observe(r.ttft_s)
            if r.time_per_output_token_s is not None:
                tpot.observe(r.time_per_output_token_s)
        self.prompt.labels(model, target).inc(r.prompt_tokens)
        self.generation.labels(model, target).inc(r.completion_tokens)
        if r.target is None:
            return
        cost = self.cost.labels(target, "cloud" if r.cloud else "local", r.cost.currency)
        equivalent = self.equivalent.labels(target, r.cost.currency)
        cost.inc(float(max(r.cost.amount, Decimal(0))))
        equivalent.inc(float(max(r.cloud_equivalent.amount, Decimal(0))))
        if r.spilled:
            self.spilled.labels(r.route or model, target).inc()


def _random_record(rng: random.Random) -> RequestRecord:
    if rng.random() < 0.15:
        return refused(model=rng.choice(["chat", "typo"]))
    target = rng.choice(["local", "cloud", "other"])
    status = rng.choice(["ok", "ok", "ok", "error", "cancelled"])
    tokens = rng.choice([0, 1, 2, 7, 300])
    edge = rng.choice([*TTFT_BUCKETS, *DURATION_BUCKETS])  # values on an edge fall in its bucket
    return record(
        model=rng.choice(["chat", "local", "typo"]),
        target=target,
        cloud=target == "cloud",
        spilled=rng.random() < 0.3,
        status=status,
        error=None if status == "ok" else rng.choice(["upstream_error", "cancelled"]),
        completion_tokens=tokens,
        prompt_tokens=rng.randrange(0, 5000),
        ttft_s=rng.choice([None, edge, rng.uniform(0, 3)]),
        duration_s=rng.choice([edge, rng.uniform(0, 200)]),
        queue_s=rng.choice([None, 0.0, edge, rng.expovariate(2.0)]),
        cost=Money(Decimal(rng.choice(["0", "0.000002", "0.75"])), "USD"),
        cloud_equivalent=Money(Decimal(rng.choice(["0", "0.00001", "1.5"])), "USD"),
    )


def test_exposition_is_prometheus_clients_own_for_the_same_records() -> None:
    rng = random.Random(14)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    sink, reference = RequestMetrics(ours, ["chat", "local"]), _Reference(theirs, ["chat", "local"])
    for _ in range(2000):
        r = _random_record(rng)
        sink.record(r)
        reference.record(r)
    mine, expected = scrape(ours), scrape(theirs)
    assert mine.keys() == expected.keys()  # every series, _created ones included
    for key, value in expected.items():
        if not key[0].endswith("_created"):
            assert mine[key] == pytest.approx(value, rel=1e-12), key

    def types(registry: CollectorRegistry) -> list[str]:
        lines = generate_latest(registry).decode().splitlines()
        return [line for line in lines if line.startswith("# TYPE")]

    assert types(ours) == types(theirs)  # the same families, in the same order
