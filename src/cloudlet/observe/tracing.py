"""OpenTelemetry traces of requests, after the GenAI semantic conventions.

Off unless the standard environment variables configure an exporter (read once, when the app
is built): ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``; ``none`` turns tracing off), or,
without it, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``;
``OTEL_SDK_DISABLED=true`` turns it off whatever else is set. OTLP goes over HTTP/protobuf;
the SDK reads the rest as the specification says (endpoint, headers, timeout, compression,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``), and
``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` caps the spans per OTLP request.

A request is one ``SERVER`` span named ``{gen_ai.operation.name} {gen_ai.request.model}``
from its arrival to its end, continuing the client's ``traceparent`` when it sent one; each
upstream attempt is a ``CLIENT`` child span (a failover shows two), whose context reaches a
remote engine as ``traceparent`` through :mod:`cloudlet.engines.propagation`. Prompts and
completions are never recorded.

On the request's path the tracer only draws ids, asks the sampler, and describes each span
as it ends (:class:`~cloudlet.observe.spans.SpanData`); their encoding and export happen
elsewhere: in the server, in a child process (:mod:`cloudlet.observe.span_process`).
The SDK's own spans cost the event loop about 140 microseconds per request, and its OTLP
encoding (on its export thread, holding the GIL) 110 more: a third of the requests a
gateway serves per second.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Decision, Sampler
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cloudlet.engines.propagation import trace_headers
from cloudlet.gateway.record import RequestRecord
from cloudlet.observe.spans import CLIENT, SERVER, SpanData, checked

if TYPE_CHECKING:
    from contextvars import Token

    from cloudlet.domain import GenerationRequest
    from cloudlet.gateway.life import RequestLife

log = logging.getLogger(__name__)

_PROPAGATOR = TraceContextTextMapPropagator()
_SAMPLED = 0x01


def exporters_from_env() -> list[str]:
    """The exporters ``OTEL_*`` asks for (``otlp``, ``console``); none when tracing is off.

    Read once, when the app is built; an exporter cloudlet cannot make is an error line.
    """
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if not names:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        if not endpoint:
            return []
        names = ["otlp"]
    if "none" in names:
        return []
    return checked(names, env)


def describe_exporters(names: list[str] | tuple[str, ...]) -> str:
    """Where the exporters ``names`` send spans, as ``OTEL_*`` says, and how they sample."""
    env = os.environ
    where = []
    for name in names:
        if name == "console":
            where.append("console (stdout)")
            continue
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if not endpoint:
            base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")
            endpoint = base.rstrip("/") + "/v1/traces"
        where.append(f"OTLP to {endpoint}")
    sampler = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    arg = env.get("OTEL_TRACES_SAMPLER_ARG")
    return ", ".join(where) + f"; sampler {sampler}" + (f" ({arg})" if arg else "")


def sampler_from_env() -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` names, as the SDK reads it (by default, the
    parent's decision, and every new trace sampled)."""
    return TracerProvider(shutdown_on_exit=False).sampler


class SpanOutlet(Protocol):
    """Where finished spans go: a :class:`~cloudlet.observe.spans.SpanWriter` in process,
    a :class:`~cloudlet.observe.span_process.SpanProcess` in the server. Must not block."""

    def put(self, spans: list[SpanData]) -> None: ...


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class _Trace:
    """A request's trace while it runs: its span's ids, and its attempts' spans as they end."""

    __slots__ = (
        "attributes",
        "ended",
        "flags",
        "name",
        "parent_id",
        "span_id",
        "start_ns",
        "state",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        trace_id: int,
        parent_id: int,
        flags: int,
        state: str,
        start_ns: int,
        attributes: dict[str, Any],
    ) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = _IDS.generate_span_id()
        self.parent_id = parent_id  # the client's span, 0 for none
        self.flags = flags
        self.state = state  # the W3C tracestate header, "" for none
        self.start_ns = start_ns
        self.attributes = attributes
        self.ended: list[SpanData] = []  # the attempts' spans

    @property
    def sampled(self) -> bool:
        return bool(self.flags & _SAMPLED)

    def headers(self, span_id: int) -> tuple[tuple[str, str], ...]:
        """W3C ``traceparent`` (and ``tracestate``) of this trace's span ``span_id``."""
        parent = f"00-{self.trace_id:032x}-{span_id:016x}-{self.flags:02x}"
        if self.state:
            return (("traceparent", parent), ("tracestate", self.state))
        return (("traceparent", parent),)


_IDS = RandomIdGenerator()


class OtelTracer:
    """A :class:`~cloudlet.gateway.record.Tracer` that hands each sampled request's spans,
    when it ends, to ``outlet``."""

    def __init__(self, outlet: SpanOutlet, sampler: Sampler | None = None) -> None:
        self._outlet = outlet
        self._sampler = sampler if sampler is not None else sampler_from_env()

    def start(self, life: RequestLife, request: GenerationRequest | None) -> None:
        if life.trace is not None:
            return
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": life.operation,
            "gen_ai.request.model": life.model,
        }
        if request is not None:
            # As asked: the request keeps OpenAI's defaults (1.0) for what the client left out,
            # so a default is not recorded.
            if request.max_tokens is not None:
                attributes["gen_ai.request.max_tokens"] = request.max_tokens
            if request.sampling.temperature != 1.0:
                attributes["gen_ai.request.temperature"] = request.sampling.temperature
            if request.sampling.top_p != 1.0:
                attributes["gen_ai.request.top_p"] = request.sampling.top_p
        context = _incoming(life)
        parent = trace.get_current_span(context).get_span_context() if context else None
        if parent is not None and parent.is_valid:
            trace_id, parent_id = parent.trace_id, parent.span_id
            state = parent.trace_state.to_header() if parent.trace_state else ""
        else:
            trace_id, parent_id, state, context = _IDS.generate_trace_id(), 0, "", None
        name = f"{life.operation} {life.model}"
        if context is None and self._sampler is DEFAULT_ON:
            flags = _SAMPLED  # a new trace under the default sampler: what it would decide
        else:
            decided = self._sampler.should_sample(
                context, trace_id, name, SpanKind.SERVER, attributes
            )
            if decided.trace_state is not None:
                state = decided.trace_state.to_header()
            flags = _SAMPLED if decided.decision is Decision.RECORD_AND_SAMPLE else 0
            attributes.update(decided.attributes or {})
        started = _ns(life.arrival.ts.timestamp())
        life.trace = _Trace(name, trace_id, parent_id, flags, state, started, attributes)

    def attempt(self, life: RequestLife, target: str, provider: str) -> _AttemptSpan:
        if life.trace is None:
            self.start(life, None)
        state = life.trace
        assert isinstance(state, _Trace)
        return _AttemptSpan(
            state,
            f"{life.operation} {target}",
            {
                "gen_ai.operation.name": life.operation,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": target,
            },
        )

    def finish(self, life: RequestLife, record: RequestRecord) -> None:
        if life.trace is None:  # never started (refused before it ran)
            self.start(life, None)
        state = life.trace
        assert isinstance(state, _Trace)
        if not state.sampled:
            return
        state.attributes.update(_attributes(record))
        server = SpanData(
            state.trace_id,
            state.span_id,
            state.parent_id,
            True,  # a parent of the request's span is the client's
            state.flags,
            state.state,
            SERVER,
            state.name,
            state.start_ns,
            time.time_ns(),
            state.attributes,
            record.status == "error",
        )
        self._outlet.put([server, *state.ended])


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
    """The span's attributes from the record; what the access log, the metrics or another
    attribute already say is left out."""
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

    __slots__ = ("_attributes", "_headers", "_name", "_span_id", "_start", "_state", "_token")

    def __init__(self, state: _Trace, name: str, attributes: dict[str, Any]) -> None:
        self._state = state
        self._name = name
        self._attributes = attributes
        self._span_id = _IDS.generate_span_id()
        self._start = time.time_ns()
        self._headers = state.headers(self._span_id)
        self._token: Token[tuple[tuple[str, str], ...]] | None = None

    def __enter__(self) -> None:
        self._token = trace_headers.set(self._headers)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            trace_headers.reset(self._token)
            self._token = None

    def end(self, error: str | None) -> None:
        state = self._state
        if not state.sampled:
            return
        if error is not None:
            self._attributes["error.type"] = error
        span = SpanData(
            state.trace_id,
            self._span_id,
            state.span_id,
            False,
            state.flags,
            state.state,
            CLIENT,
            self._name,
            self._start,
            time.time_ns(),
            self._attributes,
            error is not None,
        )
        state.ended.append(span)
