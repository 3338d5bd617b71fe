"""Observability: what each request's record feeds besides the ledger.

:func:`install` plugs the Prometheus request metrics, the access log and (when the ``OTEL_*``
environment configures an exporter) the OpenTelemetry tracer into an app's
:class:`~cloudlet.gateway.life.Recorder`, and returns an :class:`Observability` that the
app's lifespan enters (leaving it flushes and shuts the tracer down) and that the
``/metrics`` handler refreshes before each scrape (the cloud budgets' remaining amounts).
docs/observability.md describes every metric, span attribute and log field.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from cloudlet.config import Spec
from cloudlet.gateway import Gateway
from cloudlet.gateway.life import Recorder
from cloudlet.observe.access_log import AccessLog
from cloudlet.observe.metrics import BudgetGauge, RequestMetrics
from cloudlet.observe.tracing import OtelTracer, provider_from_env
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
        tracer_provider: TracerProvider | None,
    ) -> None:
        self.metrics = metrics
        self.budgets = budgets
        self.access_log = access_log
        self.tracer_provider = tracer_provider

    async def refresh(self) -> None:
        """Read what is read at scrape time (the cloud budgets' spending)."""
        await self.budgets.refresh()

    async def __aenter__(self) -> Observability:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        provider = self.tracer_provider
        if provider is None:
            return
        # Shutting down exports what is left, on the SDK's thread: wait for it off the loop,
        # and not forever when the collector does not answer.
        try:
            await asyncio.wait_for(asyncio.to_thread(provider.shutdown), SHUTDOWN_TIMEOUT_S)
        except TimeoutError:
            log.warning("tracing: spans not exported within %.0fs of stopping", SHUTDOWN_TIMEOUT_S)


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
    provider = provider_from_env()
    if provider is not None:
        recorder.tracer = OtelTracer(provider)
    return Observability(metrics, budgets, access_log, provider)


__all__ = ["Observability", "install"]
