"""OpenTelemetry traces of requests, after the GenAI semantic conventions.

Off unless the standard environment variables configure an exporter (read once, when the app
is built): ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``; ``none`` turns tracing off), or,
without it, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``;
``OTEL_SDK_DISABLED=true`` turns it off whatever else is set. OTLP goes over HTTP/protobuf;
the SDK reads the rest as the specification says (endpoint, headers, timeout, compression,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``).

Each app has its own :class:`~opentelemetry.sdk.trace.TracerProvider` (the global one is
never set) and shuts it down when it stops. A request is one ``SERVER`` span named
``{gen_ai.operation.name} {gen_ai.request.model}`` from its arrival to its end, continuing the
client's ``traceparent`` when it sent one; each upstream attempt is a ``CLIENT`` child span
(a failover shows two), whose context reaches a remote engine as ``traceparent`` through
:mod:`cloudlet.engines.propagation`. Prompts and completions are never recorded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Attributes, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanContext, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cloudlet import __version__
from cloudlet.engines.propagation import trace_headers
from cloudlet.gateway.record import RequestRecord

if TYPE_CHECKING:
    from contextvars import Token

    from cloudlet.domain import GenerationRequest
    from cloudlet.gateway.life import RequestLife

log = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()


def provider_from_env() -> TracerProvider | None:
    """A tracer provider exporting where ``OTEL_*`` says, or None when tracing is off.

    Read once, when the app is built; the SDK reads the exporter's own settings from the same
    environment.
    """
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        if not endpoint:
            return None
        names = ["otlp"]
    if "none" in names:
        return None
    exporters = [e for e in (_exporter(name, env) for name in names) if e is not None]
    if not exporters:
        return None
    provider = TracerProvider(resource=resource(), shutdown_on_exit=False)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing: exporting spans (%s)", ", ".join(names))
    return provider


def resource() -> Resource:
    """The service's resource: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` as the
    SDK reads them, ``cloudlet`` when no name is set, and cloudlet's version."""
    found = Resource.create({SERVICE_VERSION: __version__})
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: "cloudlet"}))
    return _Resource(dict(found.attributes), found.schema_url)


class _Resource(Resource):
    """A resource that hashes once. The OTLP exporter groups every span it sends by its
    resource, and a resource's hash is a JSON dump of its attributes: about 10 microseconds
    per span, for a value that never changes."""

    def __init__(self, attributes: Attributes, schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        log.error("tracing: OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none)", name)
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol.strip() != "http/protobuf":
        log.error(
            "tracing: OTLP protocol %s is not supported; cloudlet exports http/protobuf", protocol
        )
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout ...: from the environment


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class OtelTracer:
    """A :class:`~cloudlet.gateway.record.Tracer` over one tracer provider."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._tracer = provider.get_tracer("cloudlet", __version__)

    def start(self, life: RequestLife, request: GenerationRequest | None) -> None:
        if life.trace is not None:
            return
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": life.operation,
            "gen_ai.request.model": life.model,
        }
        if request is not None:
            # As asked: the request keeps OpenAI's defaults (1.0) for what the client left out,
            # so a default is not recorded (each attribute costs about 10 us to set and export).
            if request.max_tokens is not None:
                attributes["gen_ai.request.max_tokens"] = request.max_tokens
            if request.sampling.temperature != 1.0:
                attributes["gen_ai.request.temperature"] = request.sampling.temperature
            if request.sampling.top_p != 1.0:
                attributes["gen_ai.request.top_p"] = request.sampling.top_p
        life.trace = self._tracer.start_span(
            f"{life.operation} {life.model}",
            context=_incoming(life),
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=_ns(life.arrival.ts.timestamp()),
        )

    def attempt(self, life: RequestLife, target: str, provider: str) -> _AttemptSpan:
        if life.trace is None:
            self.start(life, None)
        parent = life.trace
        assert isinstance(parent, Span)
        span = self._tracer.start_span(
            f"{life.operation} {target}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": life.operation,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": target,
            },
        )
        return _AttemptSpan(span)

    def finish(self, life: RequestLife, record: RequestRecord) -> None:
        span = life.trace
        if not isinstance(span, Span):  # never started (refused before it ran)
            self.start(life, None)
            span = life.trace
            assert isinstance(span, Span)
        if span.is_recording():
            span.set_attributes(_attributes(record))
            if record.status == "error":
                span.set_status(StatusCode.ERROR)
        span.end()


def _incoming(life: RequestLife) -> Context | None:
    """The client's trace context (its ``traceparent``), or None to start a new trace (a
    malformed one is ignored, as the W3C specification says)."""
    arrival = life.arrival
    if arrival.traceparent is None:
        return None
    carrier = {"traceparent": arrival.traceparent}
    if arrival.tracestate is not None:
        carrier["tracestate"] = arrival.tracestate
    return _PROPAGATOR.extract(carrier)


def _attributes(record: RequestRecord) -> dict[str, Any]:
    """The span's attributes from the record. Each one costs about 5 microseconds to set and
    export: what the access log, the metrics or another attribute already say is left out."""
    out: dict[str, Any] = {
        "gen_ai.response.id": record.request_id,
        "gen_ai.usage.input_tokens": record.prompt_tokens,
        "gen_ai.usage.output_tokens": record.completion_tokens,
        "cloudlet.spilled": record.spilled,
        "cloudlet.cost": float(record.cost.amount),
    }
    if record.provider is not None:
        out["gen_ai.provider.name"] = record.provider
    if record.target is not None:
        out["gen_ai.response.model"] = record.target  # the model that served it
    if record.route is not None:
        out["cloudlet.route"] = record.route
    if record.finish_reason is not None:
        out["gen_ai.response.finish_reasons"] = (record.finish_reason,)
    if record.status != "ok":
        out["error.type"] = record.error or record.status
        out["http.response.status_code"] = record.http_status
    return out


class _AttemptSpan:
    """One upstream attempt's span; entered around the call that starts the upstream request,
    it hands the span's ``traceparent`` to the engine through the context."""

    __slots__ = ("_headers", "_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._token: Token[tuple[tuple[str, str], ...]] | None = None
        context = span.get_span_context()
        self._headers = _trace_context(context)

    def __enter__(self) -> None:
        if self._headers:
            self._token = trace_headers.set(self._headers)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            trace_headers.reset(self._token)
            self._token = None

    def end(self, error: str | None) -> None:
        if error is not None and self._span.is_recording():
            self._span.set_attribute("error.type", error)
            self._span.set_status(StatusCode.ERROR)
        self._span.end()


def _trace_context(context: SpanContext) -> tuple[tuple[str, str], ...]:
    """W3C ``traceparent`` (and ``tracestate``) of ``context``; none when it is invalid."""
    if not context.is_valid:
        return ()
    parent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    state = context.trace_state.to_header() if context.trace_state else ""
    return (("traceparent", parent), ("tracestate", state)) if state else (("traceparent", parent),)
