"""Finished spans as plain values, and what turns them into OpenTelemetry spans and exports them.

The tracer (:mod:`cloudlet.observe.tracing`) describes each finished span as a
:class:`SpanData`: a tuple of ids, name, times and attributes, cheap to make and to pickle. A
:class:`Writer` exports them: a :class:`SpanWriter` turns them into the SDK's
:class:`~opentelemetry.sdk.trace.ReadableSpan` and hands them to its span processors (the
console exporter, and tests, through the SDK's in-memory exporter);
:class:`~cloudlet.observe.otlp.OtlpWriter` encodes them as OTLP itself. The server runs its
writers in a child process (:mod:`cloudlet.observe.span_process`), so that this work never
takes the event loop's time; tests run them in process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Attributes, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from cloudlet import __version__

log = logging.getLogger(__name__)

#: The exporters cloudlet can make, by their ``OTEL_TRACES_EXPORTER`` names.
EXPORTERS = ("otlp", "console")

SERVER, CLIENT = 0, 1
_KINDS = (SpanKind.SERVER, SpanKind.CLIENT)


class SpanData(NamedTuple):
    """One finished span. Ids are integers; ``parent_id`` is 0 for a root span, and
    ``remote_parent`` says the parent is the client's (from its ``traceparent``). ``kind`` is
    :data:`SERVER` or :data:`CLIENT`; times are nanoseconds since the epoch; ``error`` marks
    the span's status an error."""

    trace_id: int
    span_id: int
    parent_id: int
    remote_parent: bool
    flags: int
    tracestate: str
    kind: int
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    error: bool


class Writer(Protocol):
    """Where finished spans are written: made into the SDK's spans (:class:`SpanWriter`) or
    encoded as OTLP (:class:`~cloudlet.observe.otlp.OtlpWriter`), and exported."""

    def put(self, spans: Sequence[SpanData]) -> None: ...

    def shutdown(self) -> None:
        """Export what is left and stop."""


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


def exporter(name: str) -> SpanExporter:
    """The exporter ``name`` (one of :data:`EXPORTERS`); the SDK reads its settings
    (endpoint, headers, timeout, compression) from the ``OTEL_*`` environment."""
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"no span exporter {name!r}")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class SpanWriter:
    """Turns :class:`SpanData` into SDK spans and ends them on its processors (one
    :class:`~opentelemetry.sdk.trace.export.BatchSpanProcessor` per exporter, by default:
    ``OTEL_BSP_*`` sets its queue and schedule)."""

    def __init__(
        self, processors: Iterable[SpanProcessor], service: Resource | None = None
    ) -> None:
        self._processors = list(processors)
        self._resource = service if service is not None else resource()
        self._scope = InstrumentationScope("cloudlet", __version__)

    @classmethod
    def exporting(cls, exporters: Iterable[SpanExporter]) -> SpanWriter:
        """A writer batching spans to each of ``exporters`` (``OTEL_BSP_*`` sets how)."""
        return cls(BatchSpanProcessor(each) for each in exporters)

    def put(self, spans: Sequence[SpanData]) -> None:
        for data in spans:
            span = self.readable(data)
            for processor in self._processors:
                processor.on_end(span)

    def readable(self, data: SpanData) -> ReadableSpan:
        flags = TraceFlags(data.flags)
        state = TraceState.from_header([data.tracestate]) if data.tracestate else None
        parent = None
        if data.parent_id:
            parent = SpanContext(data.trace_id, data.parent_id, data.remote_parent, flags, state)
        return ReadableSpan(
            name=data.name,
            context=SpanContext(data.trace_id, data.span_id, False, flags, state),
            parent=parent,
            resource=self._resource,
            attributes=data.attributes,
            kind=_KINDS[data.kind],
            status=Status(StatusCode.ERROR) if data.error else Status(StatusCode.UNSET),
            start_time=data.start_ns,
            end_time=data.end_ns,
            instrumentation_scope=self._scope,
        )

    def shutdown(self) -> None:
        """Export what is left and stop."""
        for processor in self._processors:
            try:
                processor.shutdown()
            except Exception:
                log.exception("tracing: a span processor failed to shut down")


def checked(names: Iterable[str], env: Mapping[str, str]) -> list[str]:
    """The exporters of ``names`` that cloudlet can make, logging an error for each other."""
    out: list[str] = []
    for name in names:
        if name not in EXPORTERS:
            log.error(
                "tracing: OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none)", name
            )
            continue
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        if name == "otlp" and protocol.strip() != "http/protobuf":
            log.error(
                "tracing: OTLP protocol %s is not supported; cloudlet exports http/protobuf",
                protocol,
            )
            continue
        out.append(name)
    return out
