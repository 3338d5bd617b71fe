"""GET /metrics: Prometheus metrics read from the engines at scrape time.

A collector per app (its own registry, no process-global state) turns each engine's
:class:`~cloudlet.domain.EngineStats` into gauges and counters labelled by model. The
autoscaler scales on ``cloudlet_queue_depth`` / ``cloudlet_in_flight_requests``.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cloudlet.api.drain import DrainState
from cloudlet.gateway import Gateway

router = APIRouter()

_GAUGES = {
    "queue_depth": ("cloudlet_queue_depth", "Requests waiting for a slot"),
    "running": ("cloudlet_running_requests", "Requests being generated"),
    "capacity": ("cloudlet_capacity", "Sequences the engine runs at once"),
    "tokens_per_second": ("cloudlet_tokens_per_second", "Recent generation rate"),
    "estimated_queue_wait_s": ("cloudlet_estimated_queue_wait_seconds", "Wait a new request faces"),
}
_COUNTERS = {
    "requests_total": ("cloudlet_engine_requests", "Requests admitted by the engine"),
    "prompt_tokens_evaluated": ("cloudlet_prompt_tokens_evaluated", "Prompt tokens computed"),
    "prompt_tokens_cached": ("cloudlet_prompt_tokens_cached", "Prompt tokens reused from cache"),
}


class _EngineCollector(Collector):
    def __init__(self, gateway: Gateway, drain: DrainState) -> None:
        self._gateway = gateway
        self._drain = drain

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self._gateway.stats()
        for field, (name, doc) in _GAUGES.items():
            family = GaugeMetricFamily(name, doc, labels=["model"])
            for model, s in stats.items():
                family.add_metric([model], float(getattr(s, field)))
            yield family
        in_flight = GaugeMetricFamily(
            "cloudlet_in_flight_requests", "Waiting plus running requests", labels=["model"]
        )
        for model, s in stats.items():
            in_flight.add_metric([model], float(s.queue_depth + s.running))
        yield in_flight
        for field, (name, doc) in _COUNTERS.items():
            counter = CounterMetricFamily(name, doc, labels=["model"])
            for model, s in stats.items():
                counter.add_metric([model], float(getattr(s, field)))
            yield counter
        ready = GaugeMetricFamily(
            "cloudlet_model_ready",
            "1 when the model is ready (loaded, and a replica up)",
            labels=["model"],
        )
        for model, status in self._gateway.status().items():
            ready.add_metric([model], 1.0 if status == "ready" else 0.0)
        yield ready
        workers = self._gateway.workers()
        up = GaugeMetricFamily(
            "cloudlet_worker_up", "1 while the model's worker process serves", labels=["model"]
        )
        restarts = CounterMetricFamily(
            "cloudlet_worker_restarts",
            "Times the model's worker process was restarted",
            labels=["model"],
        )
        safe = GaugeMetricFamily(
            "cloudlet_worker_safe_mode",
            "1 when the worker runs llama.cpp without its extra CPU buffer types",
            labels=["model"],
        )
        for model, state in workers.items():
            up.add_metric([model], 1.0 if state.state == "up" else 0.0)
            restarts.add_metric([model], float(state.restarts))
            safe.add_metric([model], 1.0 if state.safe_mode else 0.0)
        yield from (up, restarts, safe)
        yield GaugeMetricFamily(
            "cloudlet_draining",
            "1 while the server drains before exit",
            value=float(self._drain.draining),
        )


class AuthFailures:
    """``cloudlet_auth_failures_total{reason}``: requests refused with 401. They name no known
    tenant, so they get no ledger row; this counter is where they are seen."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counter = Counter(
            "cloudlet_auth_failures",
            "Requests refused with 401 (no API key, or an unknown or revoked one)",
            ["reason"],
            registry=registry,
        )

    def record(self, request: Request) -> None:
        sent = "authorization" in request.headers or "x-api-key" in request.headers
        self._counter.labels("invalid_key" if sent else "missing_key").inc()


def make_registry(gateway: Gateway, drain: DrainState) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_EngineCollector(gateway, drain))
    return registry


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    observe = getattr(request.app.state, "observe", None)
    if observe is not None:
        await observe.refresh()  # what is read at scrape time (the cloud budgets' spending)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
