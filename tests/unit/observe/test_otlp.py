"""cloudlet's OTLP encoding of spans, checked against the SDK's own encoder (the oracle) for the
spans the real tracer makes, and its writer posting to a real OTLP receiver on loopback."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cloudlet.domain import ChatMessage, GenerationRequest, ModelId, SamplingParams
from cloudlet.gateway.life import Arrival, Recorder
from cloudlet.gateway.prices import Prices
from cloudlet.observe import otlp
from cloudlet.observe.otlp import Encoder, OtlpWriter
from cloudlet.observe.spans import CLIENT, SERVER, SpanData, SpanWriter, resource
from cloudlet.observe.tracing import OtelTracer
from tests.otlp_receiver import OtlpReceiver
from tests.unit.observe.records import record, refused
from tests.unit.observe.test_tracing import otel_env


class Collect:
    """An outlet keeping the tracer's spans, as the span process receives them."""

    def __init__(self) -> None:
        self.spans: list[SpanData] = []

    def put(self, spans: list[SpanData]) -> None:
        self.spans.extend(spans)


def traced_requests() -> list[SpanData]:
    """What the tracer makes of: a failover, a request continuing a client's trace (with
    tracestate), a refused request and a failed one."""
    outlet = Collect()
    tracer = OtelTracer(outlet)
    recorder = Recorder(Prices([], dict), tracer=tracer)

    life = recorder.begin(Arrival.now(), "chat", "chat")
    life.start(
        GenerationRequest(
            model=ModelId("chat"),
            messages=(ChatMessage(role="user", content="hi"),),
            max_tokens=16,
            sampling=SamplingParams(temperature=0.5, top_p=0.9),
        )
    )
    first = life.attempt("local", "llamacpp")
    first.end("engine_overloaded")
    second = life.attempt("gpt-4o-mini", "openai")
    second.end(None)
    tracer.finish(life, record(request_id="req-1", spilled=True, target="gpt-4o-mini"))

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    arrival = dataclasses.replace(
        Arrival.now(), traceparent=parent, tracestate="vendor=abc,other=x"
    )
    life = recorder.begin(arrival, "embeddings", "minilm")
    life.attempt("minilm", "llamacpp").end(None)
    tracer.finish(life, record(request_id="req-2", operation="embeddings", model="minilm"))

    life = recorder.begin(Arrival.now(), "chat", "chat")
    tracer.finish(life, refused(request_id="req-3"))
    life = recorder.begin(Arrival.now(), "chat", "chat")
    tracer.finish(life, record(request_id="req-4", status="error", error="upstream_error"))
    return outlet.spans


VALUES = SpanData(
    trace_id=1 << 100,
    span_id=7,
    parent_id=0,
    remote_parent=False,
    flags=1,
    tracestate="",
    kind=CLIENT,
    name="every value",
    start_ns=1,
    end_ns=2,
    attributes={
        "s": "text",
        "b": True,
        "i": -3,
        "f": 0.25,
        "raw": b"\x00\x01",
        "strs": ("a", "b"),
        "ints": [1, 2],
        "empty": (),
    },
    error=False,
)


def sdk_encoding(spans: list[SpanData]) -> ExportTraceServiceRequest:
    memory = InMemorySpanExporter()
    SpanWriter([SimpleSpanProcessor(memory)]).put(spans)
    return encode_spans(memory.get_finished_spans())


def decoded(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return request


def test_the_encoding_is_the_sdks_for_every_span_the_tracer_makes() -> None:
    spans = [*traced_requests(), VALUES]
    assert {s.kind for s in spans} == {SERVER, CLIENT}
    ours = decoded(Encoder(resource()).encode(spans))
    sdk = sdk_encoding(spans)

    (group,) = ours.resource_spans
    (want,) = sdk.resource_spans
    assert group.resource == want.resource
    assert group.schema_url == want.schema_url
    (scoped,) = group.scope_spans
    (want_scoped,) = want.scope_spans
    assert scoped.scope == want_scoped.scope
    assert len(scoped.spans) == len(want_scoped.spans) == len(spans)
    for got, expected, data in zip(scoped.spans, want_scoped.spans, spans, strict=True):
        # OTLP puts the W3C trace flags in the low byte: the SDK leaves them out.
        assert got.flags == expected.flags | data.flags
        assert without_unset_status(got) == without_unset_status(expected)


def without_unset_status(span: Span) -> Span:
    """``span`` without its flags, and without a status that says nothing (the SDK sends an
    empty one, cloudlet none)."""
    out = Span()
    out.CopyFrom(span)
    out.ClearField("flags")
    if out.status.code == 0 and not out.status.message:
        out.ClearField("status")
    return out


def test_remote_parents_and_errors_are_flagged_as_otlp_says() -> None:
    spans = traced_requests()
    encoded = decoded(Encoder(resource()).encode(spans)).resource_spans[0].scope_spans[0].spans
    by_name = {(s.name, s.kind): s for s in encoded}
    continued = by_name[("embeddings minilm", Span.SPAN_KIND_SERVER)]
    assert continued.parent_span_id.hex() == "b7ad6b7169203331"
    assert continued.flags == 0x301  # sampled; has a parent, which is remote
    assert continued.trace_state == "vendor=abc,other=x"
    attempt = by_name[("embeddings minilm", Span.SPAN_KIND_CLIENT)]
    assert attempt.parent_span_id == continued.span_id
    assert attempt.flags == 0x101  # its parent is the request's span, in this process
    failed_attempt = by_name[("chat local", Span.SPAN_KIND_CLIENT)]
    assert failed_attempt.status.code == 2  # STATUS_CODE_ERROR
    root = next(s for s in encoded if s.name == "chat chat" and not s.parent_span_id)
    assert root.flags == 0x101


def test_a_value_that_is_no_attribute_value_is_sent_as_its_text() -> None:
    odd = VALUES._replace(attributes={"odd": {"a": 1}})
    (span,) = decoded(Encoder(resource()).encode([odd])).resource_spans[0].scope_spans[0].spans
    assert span.attributes[0].value.string_value == "{'a': 1}"


def test_the_writer_posts_batches_of_the_size_the_environment_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = OtlpReceiver().start()
    try:
        otel_env(
            monkeypatch,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "3",
                "OTEL_SERVICE_NAME": "gateway-eu",
            },
        )
        writer = OtlpWriter.from_env()
        assert isinstance(writer, OtlpWriter)
        spans = traced_requests()  # 7 spans
        writer.put(spans)
        writer.shutdown()
        got = receiver.wait_for(len(spans))
    finally:
        receiver.stop()
    assert receiver.exports == 3  # 3 + 3 + 1
    assert sorted(s.span_id for s in got) == sorted(f"{s.span_id:016x}" for s in spans)
    assert {s.service for s in got} == {"gateway-eu"}


def test_a_batch_it_cannot_encode_is_logged_and_the_next_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Posted:
        def __init__(self) -> None:
            self.bodies: list[bytes] = []

        def export(self, data: bytes) -> None:
            self.bodies.append(data)

        def shutdown(self) -> None:
            pass

    client = Posted()
    writer = OtlpWriter(client, resource(), max_batch=1)
    too_big = VALUES._replace(attributes={"i": 1 << 70})  # no int64
    writer.put([too_big, VALUES])
    assert "could not be encoded" in caplog.text
    (body,) = client.bodies
    assert decoded(body).resource_spans[0].scope_spans[0].spans[0].name == "every value"


def test_without_the_sdk_client_it_falls_back_to_the_sdks_encoding(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "cloudlet.observe.otlp")
    monkeypatch.setattr(otlp, "exporter", lambda name: ConsoleSpanExporter())
    writer = OtlpWriter.from_env()
    assert isinstance(writer, SpanWriter)
    writer.shutdown()
    assert "SDK encoding" in caplog.text
