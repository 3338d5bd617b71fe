"""Observability: what each request's record feeds besides the ledger.

:func:`install` plugs the Prometheus request metrics, the access log and (when the ``OTEL_*``
environment configures an exporter) the OpenTelemetry tracer into an app's
:class:`~cloudlet.gateway.life.Recorder`, and returns an :class:`Observability` that the
app's lifespan enters (entering starts the span exporter process, leaving it exports what is
left and stops it) and that the
``/metrics`` handler refreshes before each scrape (the cloud budgets' remaining amounts).
docs/observability.md describes every metric, span attribute and log field.
"""

from __future__ import annotations

import logging
from types import TracebackType

from prometheus_client import CollectorRegistry

from cloudlet.config import Spec
from cloudlet.gateway import Gateway
from cloudlet.gateway.life import Recorder
from cloudlet.observe.access_log import AccessLog
from cloudlet.observe.metrics import BudgetGauge, RequestMetrics
from cloudlet.observe.span_process import SpanProcess
from cloudlet.observe.tracing import OtelTracer, describe_exporters, exporters_from_env
from cloudlet.pricing import Money

log = logging.getLogger(__name__)

#: How long stopping waits for the last spans to be exported.
SHUTDOWN_TIMEOUT_S = 5.0


class Observability:
    """What :func:`install` put in place for one app."""

    def __init__(
        self,
        metrics: RequestMetrics,
        budgets: BudgetGauge,
        access_log: AccessLog | None,
        spans: SpanProcess | None,
    ) -> None:
        self.metrics = metrics
        self.budgets = budgets
        self.access_log = access_log
        self.spans = spans

    def describe_tracing(self) -> str | None:
        """Where spans go, for the start-up banner (None: tracing is off)."""
        if self.spans is None:
            return None
        return describe_exporters(self.spans.exporters)

    async def refresh(self) -> None:
        """Read what is read at scrape time (the cloud budgets' spending)."""
        await self.budgets.refresh()

    async def __aenter__(self) -> Observability:
        if self.spans is not None:
            await self.spans.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.spans is not None:
            # Not forever when the collector does not answer.
            await self.spans.close(SHUTDOWN_TIMEOUT_S)


def install(
    recorder: Recorder, spec: Spec, registry: CollectorRegistry, gateway: Gateway
) -> Observability:
    """Add the metrics and access-log sinks to ``recorder`` and, when ``OTEL_*`` configures
    an exporter, set its tracer. The request metrics go on ``registry`` (the app's own).

    ``spec.server.access_log`` switches the access log, ``spec.server.log_format`` makes its
    lines JSON. Call once per app, and enter the result in the app's lifespan.
    """
    names = [str(info.id) for info in gateway.models()]
    metrics = RequestMetrics(registry, names)
    recorder.sinks.add(metrics)
    limits = {
        route.name: Money(route.cloud_budget.limit, route.cloud_budget.currency)
        for route in spec.routes
        if route.cloud_budget is not None
    }
    budgets = BudgetGauge(limits, gateway.budget_spent)
    registry.register(budgets)
    access_log = None
    if spec.server.access_log:
        access_log = AccessLog(json_lines=spec.server.log_format == "json")
        recorder.sinks.add(access_log)
    exporters = exporters_from_env()
    spans = None
    if exporters:
        spans = SpanProcess(exporters)
        recorder.tracer = OtelTracer(spans)
        log.info("tracing: exporting spans (%s)", ", ".join(exporters))
    return Observability(metrics, budgets, access_log, spans)


__all__ = ["Observability", "install"]
