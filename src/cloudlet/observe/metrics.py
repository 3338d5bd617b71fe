"""Prometheus request metrics: a sink that counts every request's record, on the app's registry.

The names and labels are fixed (docs/observability.md has the table). Histogram bucket edges
are the OpenTelemetry GenAI semantic conventions' (``gen_ai.server.time_to_first_token``,
``gen_ai.server.time_per_output_token``, ``gen_ai.server.request.duration``).

:meth:`RequestMetrics.record` runs on every request's path, so it only adds to plain
numbers (what it counts per (model, target) pair, and per request outcome, is made once and
kept); the metric families are made when ``/metrics`` is scraped. Label values are bounded:
a model name the gateway does not serve (a client's typo, refused with 404) counts as
``_unknown`` (served names cannot start with ``_``), so a client cannot grow the registry
without limit.

The cloud budget gauge is read at scrape time: :meth:`BudgetGauge.refresh` asks each budgeted
route what it has spent (the budget store may be Redis, so it is awaited) and the collector
reports ``limit - spent`` from that reading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class _Sum:
    """One label set's counter: a running total and when it was first counted."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()


class _Histogram:
    """One label set's histogram: per-bucket counts (not cumulative), the sum, the created
    time. A value falls in the first bucket whose edge is at least it, as in Prometheus."""

    __slots__ = ("counts", "created", "edges", "sum")

    def __init__(self, edges: tuple[float, ...]) -> None:
        self.edges = edges
        self.counts = [0] * (len(edges) + 1)  # the last: above every edge (+Inf)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.edges, value)] += 1
        self.sum += value


class _PerTarget:
    """What is counted per (model, target) pair."""

    __slots__ = ("duration", "generation_tokens", "prompt_tokens", "queue", "tpot", "ttft")

    def __init__(self) -> None:
        self.ttft = _Histogram(TTFT_BUCKETS)
        self.tpot = _Histogram(TPOT_BUCKETS)
        self.duration = _Histogram(DURATION_BUCKETS)
        self.queue = _Histogram(QUEUE_BUCKETS)
        self.prompt_tokens = _Sum()
        self.generation_tokens = _Sum()


#: The labels of what is counted per (model, target) pair.
_PER_TARGET = ["model", "target"]

#: (name, help) of each per-(model, target) histogram, by its _PerTarget attribute.
_HISTOGRAMS = {
    "ttft": (
        "cloudlet_time_to_first_token_seconds",
        "Time to the first output token, of requests that succeeded",
    ),
    "tpot": (
        "cloudlet_time_per_output_token_seconds",
        "Mean time per output token after the first, of requests that succeeded",
    ),
    "duration": (
        "cloudlet_request_duration_seconds",
        "End-to-end duration of requests that ran (every status but refused)",
    ),
    "queue": (
        "cloudlet_request_queue_time_seconds",
        "Time requests that finished waited for a slot of the engine that served them",
    ),
}
_TOKENS = {
    "prompt_tokens": ("cloudlet_prompt_tokens", "Prompt tokens of requests"),
    "generation_tokens": ("cloudlet_generation_tokens", "Generated tokens of requests"),
}


class RequestMetrics(Collector):
    """A :class:`~cloudlet.gateway.record.Sink`: request counters and latency histograms.

    ``names`` are the models and routes the gateway serves (any other requested name is
    labelled ``_unknown``). It counts in plain Python numbers and is a collector of the
    registry it is given: the families are made at scrape time. prometheus_client's own
    ``Counter`` and ``Histogram`` take a lock per increment (thread safety this event-loop
    sink does not need) and scan the bucket edges one by one: counting a request through
    them cost 3.8 % of a routed chat request's instructions (callgrind,
    benchmarks/count_gateway.py). The exposition is the same, ``_created`` samples included
    (tests/unit/observe/test_metrics.py compares it with prometheus_client's own metrics fed
    the same records).
    """

    def __init__(self, registry: CollectorRegistry, names: Iterable[str]) -> None:
        self._names = frozenset(names)
        self._outcomes: dict[tuple[str, str, str, str], _Sum] = {}
        self._targets: dict[tuple[str, str], _PerTarget] = {}
        self._costs: dict[tuple[str, bool, str], tuple[_Sum, _Sum]] = {}
        self._cost_sums: dict[tuple[str, str, str], _Sum] = {}  # target, location, currency
        self._equivalents: dict[tuple[str, str], _Sum] = {}  # target, currency
        self._spills: dict[tuple[str, str], _Sum] = {}
        registry.register(self)

    def record(self, record: RequestRecord) -> None:
        model = record.model if record.model in self._names else UNKNOWN
        target = record.target or ""
        status = record.status
        key = (model, target, status, record.error or "")
        outcome = self._outcomes.get(key)
        if outcome is None:
            outcome = self._outcomes[key] = _Sum()
        outcome.value += 1
        if status == "refused":
            return  # it never ran: no latency, tokens or cost
        per = self._targets.get((model, target))
        if per is None:
            per = self._targets[(model, target)] = _PerTarget()
        per.duration.observe(record.duration_s)
        if record.queue_s is not None:
            per.queue.observe(record.queue_s)
        if status == "ok" and record.ttft_s is not None:
            per.ttft.observe(record.ttft_s)
            tpot = record.time_per_output_token_s
            if tpot is not None:
                per.tpot.observe(tpot)
        per.prompt_tokens.value += record.prompt_tokens
        per.generation_tokens.value += record.completion_tokens
        if record.target is None:
            return
        currency = record.cost.currency
        cost = self._costs.get((target, record.cloud, currency))
        if cost is None:
            cost = self._cost_sums_of(target, record.cloud, currency)
        if record.cost.amount > 0:
            cost[0].value += float(record.cost.amount)
        if record.cloud_equivalent.amount > 0:
            cost[1].value += float(record.cloud_equivalent.amount)
        if record.spilled:
            route = record.route or model
            spill = self._spills.get((route, target))
            if spill is None:
                spill = self._spills[(route, target)] = _Sum()
            spill.value += 1

    def _cost_sums_of(self, target: str, cloud: bool, currency: str) -> tuple[_Sum, _Sum]:
        location = "cloud" if cloud else "local"
        sums = (
            self._cost_sums.setdefault((target, location, currency), _Sum()),
            self._equivalents.setdefault((target, currency), _Sum()),
        )
        self._costs[(target, cloud, currency)] = sums
        return sums

    def collect(self) -> Iterator[Metric]:
        yield _counter(
            "cloudlet_requests",
            "Requests that ended, by how (status ok, error, cancelled or refused)",
            ["model", "target", "status", "error"],
            self._outcomes.items(),
        )
        targets = list(self._targets.items())
        for attribute, (name, documentation) in _HISTOGRAMS.items():
            family = HistogramMetricFamily(name, documentation, labels=_PER_TARGET)
            for labels, per in targets:
                _add_histogram(family, labels, getattr(per, attribute))
            yield family
        for attribute, (name, documentation) in _TOKENS.items():
            sums = [(labels, getattr(per, attribute)) for labels, per in targets]
            yield _counter(name, documentation, _PER_TARGET, sums)
        yield _counter(
            "cloudlet_cost",
            "What requests cost: local hardware or cloud price",
            ["target", "location", "currency"],
            self._cost_sums.items(),
        )
        yield _counter(
            "cloudlet_cloud_equivalent_cost",
            "What the same requests would have cost at the reference cloud price",
            ["target", "currency"],
            self._equivalents.items(),
        )
        yield _counter(
            "cloudlet_spilled_requests",
            "Requests served by a target other than the route's first choice (spill-over to "
            "the cloud, or failover)",
            ["route", "target"],
            self._spills.items(),
        )


def _counter(
    name: str, documentation: str, labels: list[str], sums: Iterable[tuple[Sequence[str], _Sum]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, total in list(sums):
        family.add_metric(values, total.value, created=total.created)
    return family


#: Prometheus' own formatting of a bucket edge (prometheus_client is untyped there).
_go_float = cast(Callable[[float], str], floatToGoString)


def _add_histogram(
    family: HistogramMetricFamily, values: tuple[str, ...], histogram: _Histogram
) -> None:
    """One label set's buckets (cumulative), count, sum and created time, as prometheus_client
    writes its own histograms."""
    edges = (*(_go_float(edge) for edge in histogram.edges), "+Inf")
    cumulative = accumulate(histogram.counts)
    buckets = [(edge, float(count)) for edge, count in zip(edges, cumulative, strict=True)]
    family.add_metric(list(values), buckets, histogram.sum)
    labels = dict(zip(_PER_TARGET, values, strict=True))
    family.add_sample(family.name + "_created", labels, histogram.created)


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
