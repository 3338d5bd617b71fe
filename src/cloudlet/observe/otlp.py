"""OTLP export of finished spans, encoded straight from :class:`~cloudlet.observe.spans.SpanData`.

The SDK's way there, a :class:`~opentelemetry.sdk.trace.ReadableSpan` per span and its OTLP
encoder (``encode_spans``), costs about 130 microseconds of CPU per request (two spans) on the
span exporter process; filling opentelemetry-proto's messages in place (``add()`` and field
assignment, which the upb backend does in C) costs about 20. On a two-core machine the
exporter competes with the server and its clients for the second core, so that difference
is served requests. The HTTP side stays the SDK's: :class:`OtlpWriter` posts the encoded
batch through the client of the SDK's own ``OTLPSpanExporter``, which reads the endpoint,
headers, timeout, compression and certificates from ``OTEL_EXPORTER_OTLP_*`` and retries as
the specification says.

A span's ``flags`` carry the W3C trace flags in their low byte and whether its parent is
remote, as OTLP defines them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourcePb
from opentelemetry.proto.trace.v1.trace_pb2 import Span, SpanFlags, Status

from cloudlet import __version__
from cloudlet.observe.spans import CLIENT, SERVER, SpanData, SpanWriter, exporter, resource

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

log = logging.getLogger(__name__)

#: Spans per export request (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``'s default).
MAX_BATCH = 512

_KINDS = {SERVER: Span.SPAN_KIND_SERVER, CLIENT: Span.SPAN_KIND_CLIENT}
_HAS_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


class Client(Protocol):
    """What posts an encoded request: the SDK's OTLP/HTTP client (``OTLPSpanExporter._client``)."""

    def export(self, data: bytes) -> Any: ...

    def shutdown(self) -> None: ...


class Encoder:
    """Encodes spans as an ``ExportTraceServiceRequest`` of one resource and one scope."""

    def __init__(self, service: Resource) -> None:
        self._resource = ResourcePb()
        _set_attributes(self._resource.attributes, service.attributes)
        self._scope = InstrumentationScope(name="cloudlet", version=__version__)
        self._resource_schema = service.schema_url

    def encode(self, spans: Iterable[SpanData]) -> bytes:
        request = ExportTraceServiceRequest()
        group = request.resource_spans.add()
        group.resource.CopyFrom(self._resource)
        if self._resource_schema:
            group.schema_url = self._resource_schema
        scoped = group.scope_spans.add()
        scoped.scope.CopyFrom(self._scope)
        out = scoped.spans
        for data in spans:
            span = out.add()
            span.trace_id = data.trace_id.to_bytes(16, "big")
            span.span_id = data.span_id.to_bytes(8, "big")
            flags = data.flags | _HAS_IS_REMOTE
            if data.parent_id:
                span.parent_span_id = data.parent_id.to_bytes(8, "big")
                if data.remote_parent:
                    flags |= _IS_REMOTE
            span.flags = flags
            if data.tracestate:
                span.trace_state = data.tracestate
            span.name = data.name
            span.kind = _KINDS[data.kind]
            span.start_time_unix_nano = data.start_ns
            span.end_time_unix_nano = data.end_ns
            _set_attributes(span.attributes, data.attributes)
            if data.error:
                span.status.code = Status.STATUS_CODE_ERROR
        body: bytes = request.SerializeToString()
        return body


def _set_attributes(into: Any, attributes: Mapping[str, Any] | None) -> None:
    for key, value in (attributes or {}).items():
        pair: KeyValue = into.add()
        pair.key = key
        _set_value(pair.value, value)


def _set_value(into: AnyValue, value: Any) -> None:
    kind = type(value)
    if kind is str:
        into.string_value = value
    elif kind is bool:
        into.bool_value = value
    elif kind is int:
        into.int_value = value
    elif kind is float:
        into.double_value = value
    elif kind is bytes:
        into.bytes_value = value
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        into.array_value.SetInParent()  # an empty array is still an array
        values = into.array_value.values
        for item in value:
            _set_value(values.add(), item)
    else:  # not an OpenTelemetry attribute value: its text, rather than nothing
        into.string_value = str(value)


class OtlpWriter:
    """Encodes each batch it is handed and posts it (at most :data:`MAX_BATCH` spans per
    request, or ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``), on the caller's thread: in the span
    exporter process, a batch that waits on the collector holds the next ones in the pipe,
    whose bound then drops spans on the server's side."""

    def __init__(self, client: Client, service: Resource, max_batch: int = MAX_BATCH) -> None:
        self._client = client
        self._encoder = Encoder(service)
        self._max_batch = max(1, max_batch)

    @classmethod
    def from_env(cls) -> OtlpWriter | SpanWriter:
        """The writer ``OTEL_*`` configures, posting through the SDK exporter's client; the
        SDK's own way (its spans, encoder and batch processor) if that client is not there."""
        sdk = exporter("otlp")
        client: Client | None = getattr(sdk, "_client", None)
        if client is None or not callable(getattr(client, "export", None)):
            log.warning("tracing: this OTLP exporter has no client to post with; SDK encoding")
            return SpanWriter.exporting([sdk])
        batch = os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "").strip()
        return cls(client, resource(), int(batch) if batch.isdigit() else MAX_BATCH)

    def put(self, spans: Sequence[SpanData]) -> None:
        for at in range(0, len(spans), self._max_batch):
            chunk = spans[at : at + self._max_batch]
            try:
                data = self._encoder.encode(chunk)
            except (TypeError, ValueError, OverflowError):
                log.exception("tracing: %d spans could not be encoded", len(chunk))
                continue
            self._client.export(data)  # logs its own failures, after retrying

    def shutdown(self) -> None:
        self._client.shutdown()
