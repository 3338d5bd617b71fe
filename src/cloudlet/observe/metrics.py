"""Prometheus request metrics: a sink that counts every request's record, on the app's registry.

The names and labels are fixed (docs/observability.md has the table). Histogram bucket edges
are the OpenTelemetry GenAI semantic conventions' (``gen_ai.server.time_to_first_token``,
``gen_ai.server.time_per_output_token``, ``gen_ai.server.request.duration``).

:meth:`RequestMetrics.record` runs on every request's path, so it does no lookups it can
avoid: the label children of a (model, target) pair, and of each request outcome, are made
once and kept. Label values are bounded: a model name the gateway does not serve (a client's
typo, refused with 404) counts as ``_unknown`` (served names cannot start with ``_``), so a
client cannot grow the registry without limit.

The cloud budget gauge is read at scrape time: :meth:`BudgetGauge.refresh` asks each budgeted
route what it has spent (the budget store may be Redis, so it is awaited) and the collector
reports ``limit - spent`` from that reading.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cloudlet.gateway.record import RequestRecord
from cloudlet.pricing import Money

log = logging.getLogger(__name__)

#: ``gen_ai.server.time_to_first_token``
TTFT_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1),
    *(0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
)
#: ``gen_ai.server.time_per_output_token``
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
#: ``gen_ai.server.request.duration`` (powers of two from 10 ms to 81.92 s)
DURATION_BUCKETS = tuple(0.01 * 2**i for i in range(14))

#: Queue time: the GenAI conventions define none; the request-duration edges with a finer
#: start (a local engine's queue is often empty: most waits are under a millisecond).
QUEUE_BUCKETS = (0.001, 0.005, *DURATION_BUCKETS)

UNKNOWN = "_unknown"


@dataclass(slots=True)
class _PerTarget:
    """The label children of one (model, target) pair."""

    ttft: Histogram
    tpot: Histogram
    duration: Histogram
    queue: Histogram
    prompt_tokens: Counter
    generation_tokens: Counter


class RequestMetrics:
    """A :class:`~cloudlet.gateway.record.Sink`: request counters and latency histograms.

    ``names`` are the models and routes the gateway serves (any other requested name is
    labelled ``_unknown``).
    """

    def __init__(self, registry: CollectorRegistry, names: Iterable[str]) -> None:
        self._names = frozenset(names)
        mt = ["model", "target"]
        self._requests = Counter(
            "cloudlet_requests",
            "Requests that ended, by how (status ok, error, cancelled or refused)",
            ["model", "target", "status", "error"],
            registry=registry,
        )
        self._ttft = Histogram(
            "cloudlet_time_to_first_token_seconds",
            "Time to the first output token, of requests that succeeded",
            mt,
            registry=registry,
            buckets=TTFT_BUCKETS,
        )
        self._tpot = Histogram(
            "cloudlet_time_per_output_token_seconds",
            "Mean time per output token after the first, of requests that succeeded",
            mt,
            registry=registry,
            buckets=TPOT_BUCKETS,
        )
        self._duration = Histogram(
            "cloudlet_request_duration_seconds",
            "End-to-end duration of requests that ran (every status but refused)",
            mt,
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self._queue = Histogram(
            "cloudlet_request_queue_time_seconds",
            "Time requests that finished waited for a slot of the engine that served them",
            mt,
            registry=registry,
            buckets=QUEUE_BUCKETS,
        )
        self._prompt = Counter(
            "cloudlet_prompt_tokens", "Prompt tokens of requests", mt, registry=registry
        )
        self._generation = Counter(
            "cloudlet_generation_tokens", "Generated tokens of requests", mt, registry=registry
        )
        self._cost = Counter(
            "cloudlet_cost",
            "What requests cost: local hardware or cloud price",
            ["target", "location", "currency"],
            registry=registry,
        )
        self._equivalent = Counter(
            "cloudlet_cloud_equivalent_cost",
            "What the same requests would have cost at the reference cloud price",
            ["target", "currency"],
            registry=registry,
        )
        self._spilled = Counter(
            "cloudlet_spilled_requests",
            "Requests served by a target other than the route's first choice (spill-over to "
            "the cloud, or failover)",
            ["route", "target"],
            registry=registry,
        )
        self._outcomes: dict[tuple[str, str, str, str], Counter] = {}
        self._targets: dict[tuple[str, str], _PerTarget] = {}
        self._costs: dict[tuple[str, bool, str], tuple[Counter, Counter]] = {}
        self._spills: dict[tuple[str, str], Counter] = {}

    def record(self, record: RequestRecord) -> None:
        model = record.model if record.model in self._names else UNKNOWN
        target = record.target or ""
        status = record.status
        error = record.error or ""
        key = (model, target, status, error)
        outcome = self._outcomes.get(key)
        if outcome is None:
            outcome = self._outcomes[key] = self._requests.labels(*key)
        outcome.inc()
        if status == "refused":
            return  # it never ran: no latency, tokens or cost
        per = self._targets.get((model, target))
        if per is None:
            per = self._per_target(model, target)
        per.duration.observe(record.duration_s)
        if record.queue_s is not None:
            per.queue.observe(record.queue_s)
        if status == "ok" and record.ttft_s is not None:
            per.ttft.observe(record.ttft_s)
            tpot = record.time_per_output_token_s
            if tpot is not None:
                per.tpot.observe(tpot)
        if record.prompt_tokens:
            per.prompt_tokens.inc(record.prompt_tokens)
        if record.completion_tokens:
            per.generation_tokens.inc(record.completion_tokens)
        if record.target is None:
            return
        cost = self._costs.get((target, record.cloud, record.cost.currency))
        if cost is None:
            cost = self._cost_children(target, record.cloud, record.cost.currency)
        _add(cost[0], record.cost)
        _add(cost[1], record.cloud_equivalent)
        if record.spilled:
            route = record.route or model
            spill = self._spills.get((route, target))
            if spill is None:
                spill = self._spills[(route, target)] = self._spilled.labels(route, target)
            spill.inc()

    def _per_target(self, model: str, target: str) -> _PerTarget:
        per = _PerTarget(
            self._ttft.labels(model, target),
            self._tpot.labels(model, target),
            self._duration.labels(model, target),
            self._queue.labels(model, target),
            self._prompt.labels(model, target),
            self._generation.labels(model, target),
        )
        self._targets[(model, target)] = per
        return per

    def _cost_children(self, target: str, cloud: bool, currency: str) -> tuple[Counter, Counter]:
        children = (
            self._cost.labels(target, "cloud" if cloud else "local", currency),
            self._equivalent.labels(target, currency),
        )
        self._costs[(target, cloud, currency)] = children
        return children


def _add(counter: Counter, money: Money) -> None:
    if money.amount > 0:
        counter.inc(float(money.amount))


#: What a route's cloud budget has spent (and holds) this period; None for no budget.
SpentReader = Callable[[str], Awaitable[Money | None]]


class BudgetGauge(Collector):
    """``cloudlet_cloud_budget_remaining{route,currency}``: each budgeted route's limit less
    what it spent and holds this period, as of the last :meth:`refresh` (the ``/metrics``
    handler refreshes before every scrape). A route whose store could not be read in
    ``timeout_s`` is left out of that scrape rather than shown with an old value."""

    def __init__(
        self, limits: dict[str, Money], spent: SpentReader, *, timeout_s: float = 2.0
    ) -> None:
        self._limits = limits
        self._spent = spent
        self._timeout_s = timeout_s
        self._remaining: dict[str, Money] = {}

    @property
    def routes(self) -> list[str]:
        return list(self._limits)

    async def refresh(self) -> None:
        if not self._limits:
            return
        readings = await asyncio.gather(*(self._read(route) for route in self._limits))
        self._remaining = {
            route: self._limits[route] - spent
            for route, spent in zip(self._limits, readings, strict=True)
            if spent is not None
        }

    async def _read(self, route: str) -> Money | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._spent(route)
        except Exception as exc:  # a store that is down must not break the scrape
            log.warning("cloud budget of route %s unreadable: %s", route, exc)
            return None

    def remaining(self, route: str) -> Money | None:
        """The last reading of ``route``'s remaining budget (None: not read, or unreadable)."""
        return self._remaining.get(route)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "cloudlet_cloud_budget_remaining",
            "What a route may still spend on cloud targets this period (limit less spent and "
            "held), read at scrape time",
            labels=["route", "currency"],
        )
        for route, money in self._remaining.items():
            family.add_metric([route, money.currency], float(money.amount))
        yield family
