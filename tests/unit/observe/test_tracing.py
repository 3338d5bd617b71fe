"""The tracer: when OTEL_* turns it on, and the spans a request and its attempts make (written
in process here, through the SDK's in-memory exporter; the server's child process is
tests/unit/observe/test_span_process.py)."""

from __future__ import annotations

import dataclasses
import logging
import os

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON, Decision, Sampler
from opentelemetry.trace import SpanKind, StatusCode

from cloudlet.domain import ChatMessage, GenerationRequest, ModelId, SamplingParams
from cloudlet.engines.propagation import trace_headers
from cloudlet.gateway.life import Arrival, Recorder
from cloudlet.gateway.prices import Prices
from cloudlet.observe.span_process import writers
from cloudlet.observe.spans import SpanWriter, resource
from cloudlet.observe.tracing import OtelTracer, exporters_from_env, sampler_from_env
from tests.otlp_receiver import OtlpReceiver
from tests.unit.observe.records import record, refused


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "gw"}, False),  # no exporter named, no endpoint: off
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),  # the spec's default endpoint
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, True),
    ],
)
def test_tracing_is_off_unless_an_exporter_is_configured(
    environ: dict[str, str], on: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    otel_env(monkeypatch, environ)
    assert bool(exporters_from_env()) == on


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4317",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        },
    ],
)
def test_an_exporter_it_cannot_make_is_an_error_line_and_no_tracing(
    environ: dict[str, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    otel_env(monkeypatch, environ)
    caplog.set_level(logging.ERROR, "cloudlet.observe.tracing")
    assert exporters_from_env() == []
    assert "not supported" in caplog.text


def test_the_service_is_named_cloudlet_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    otel_env(monkeypatch, {"OTEL_TRACES_EXPORTER": "console"})
    assert resource().attributes["service.name"] == "cloudlet"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu")
    assert resource().attributes["service.name"] == "gateway-eu"


def test_spans_reach_the_endpoint_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = OtlpReceiver().start()
    try:
        otel_env(monkeypatch, {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        (writer,) = writers(exporters_from_env())  # the OTLP encoding the server's child runs
        tracer = OtelTracer(writer)
        life = Recorder(Prices([], dict), tracer=tracer).begin(
            Arrival.now("req-1"), "embeddings", "minilm"
        )
        tracer.finish(life, record(operation="embeddings", model="minilm"))
        writer.shutdown()  # exports what is left
        (span,) = receiver.wait_for(1)
    finally:
        receiver.stop()
    assert (span.name, span.kind, span.service) == ("embeddings minilm", "server", "cloudlet")
    assert span.attributes["gen_ai.usage.input_tokens"] == 9


def otel_env(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    """Exactly ``environ`` of the OTEL_* variables."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def spans() -> tuple[OtelTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return OtelTracer(SpanWriter([SimpleSpanProcessor(exporter)])), exporter


def recorder(tracer: OtelTracer) -> Recorder:
    return Recorder(Prices([], dict), tracer=tracer)


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        out.setdefault(span.name, []).append(span)
    return out


PROMPT = "What is the secret word? It is swordfish."


def test_a_failover_is_a_request_span_with_two_attempt_spans(
    spans: tuple[OtelTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    life = recorder(tracer).begin(Arrival.now("req-42"), "chat", "chat")
    request = GenerationRequest(
        model=ModelId("chat"),
        messages=(ChatMessage(role="user", content=PROMPT),),
        max_tokens=16,
        sampling=SamplingParams(temperature=0.5, top_p=0.9),
    )
    life.start(request)
    assert trace_headers.get() == ()

    first = life.attempt("local", "llamacpp")
    with first.trace:
        sent = dict(trace_headers.get())
    assert trace_headers.get() == ()  # only while the attempt starts its upstream request
    first.end("upstream_error")
    second = life.attempt("cloud", "openai")
    with second.trace:
        sent2 = dict(trace_headers.get())
    second.end(None)
    tracer.finish(
        life,
        record(
            request_id="req-42",
            target="cloud",
            provider="openai",
            cloud=True,
            spilled=True,
            completion_tokens=5,
        ),
    )

    found = by_name(exporter.get_finished_spans())
    (server,) = found["chat chat"]
    (failed,) = found["chat local"]
    (served,) = found["chat cloud"]
    assert server.kind == SpanKind.SERVER and server.parent is None
    for attempt in (failed, served):
        assert attempt.kind == SpanKind.CLIENT
        assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
        assert attempt.context.trace_id == server.context.trace_id
    version, trace_id, span_id, flags = sent["traceparent"].split("-")
    assert (version, trace_id, span_id) == (
        "00",
        f"{failed.context.trace_id:032x}",
        f"{failed.context.span_id:016x}",
    )
    assert int(flags, 16) & 1  # sampled
    assert sent2["traceparent"].split("-")[2] == f"{served.context.span_id:016x}"
    assert failed.attributes is not None and served.attributes is not None
    assert failed.attributes["error.type"] == "upstream_error"
    assert failed.status.status_code == StatusCode.ERROR
    assert dict(served.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "cloud",
    }
    assert server.attributes is not None
    assert dict(server.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "chat",
        "gen_ai.request.max_tokens": 16,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.provider.name": "openai",
        "gen_ai.response.id": "req-42",
        "gen_ai.response.model": "cloud",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 9,
        "gen_ai.usage.output_tokens": 5,
        "cloudlet.route": "chat",
        "cloudlet.spilled": True,
        "cloudlet.cost": 0.000002,
    }
    assert server.status.status_code == StatusCode.UNSET
    assert server.start_time is not None and failed.start_time is not None
    assert server.start_time <= failed.start_time
    for span in (server, failed, served):  # no message content, ever
        assert PROMPT not in str(dict(span.attributes or {}))


def test_a_refused_request_is_a_span_with_its_error_type(
    spans: tuple[OtelTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    life = recorder(tracer).begin(Arrival.now("req-9"), "chat", "chat")
    tracer.finish(life, refused(request_id="req-9"))
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat chat"
    assert span.attributes is not None
    assert span.attributes["error.type"] == "rate_limit_exceeded"
    assert span.attributes["http.response.status_code"] == 429
    assert "gen_ai.provider.name" not in span.attributes  # it reached no provider
    assert span.status.status_code == StatusCode.UNSET  # a 4xx is the client's, not ours


def test_a_failed_request_span_is_an_error(
    spans: tuple[OtelTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    life = recorder(tracer).begin(Arrival.now("req-7"), "text_completion", "local")
    life.start(None)
    tracer.finish(life, record(status="error", error="upstream_timeout", http_status=504))
    (span,) = exporter.get_finished_spans()
    assert span.name == "text_completion local"
    assert span.attributes is not None and span.attributes["error.type"] == "upstream_timeout"
    assert span.status.status_code == StatusCode.ERROR


def test_sampling_settings_left_at_their_defaults_are_not_recorded(
    spans: tuple[OtelTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    life = recorder(tracer).begin(Arrival.now("req-5"), "chat", "local")
    life.start(GenerationRequest(model=ModelId("local"), messages=(ChatMessage("user", "hi"),)))
    tracer.finish(life, record(request_id="req-5"))
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert not {
        "gen_ai.request.max_tokens",
        "gen_ai.request.temperature",
        "gen_ai.request.top_p",
    } & set(span.attributes)


def test_a_client_trace_is_continued_with_its_state(
    spans: tuple[OtelTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    client_trace, client_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    arrival = Arrival.now("req-3")
    arrival = dataclasses.replace(
        arrival, traceparent=f"00-{client_trace}-{client_span}-01", tracestate="vendor=abc"
    )
    sent = served_once(tracer, arrival, "req-3")

    server, served = sorted(exporter.get_finished_spans(), key=lambda s: s.kind.value)
    assert server.kind == SpanKind.SERVER
    assert server.parent is not None and server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == client_span
    assert f"{server.context.trace_id:032x}" == client_trace
    assert sent["traceparent"] == f"00-{client_trace}-{served.context.span_id:016x}-01"
    assert sent["tracestate"] == "vendor=abc"


@pytest.mark.parametrize(
    ("sampler", "traceparent"),
    [
        (ALWAYS_OFF, None),  # OTEL_TRACES_SAMPLER=always_off
        (None, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),  # client: unsampled
    ],
)
def test_an_unsampled_request_makes_no_spans_and_passes_its_decision_on(
    sampler: Sampler | None, traceparent: str | None
) -> None:
    exporter = InMemorySpanExporter()
    tracer = OtelTracer(SpanWriter([SimpleSpanProcessor(exporter)]), sampler)
    arrival = dataclasses.replace(Arrival.now("req-4"), traceparent=traceparent)
    sent = served_once(tracer, arrival, "req-4")
    assert exporter.get_finished_spans() == ()
    assert sent["traceparent"].endswith("-00")  # not sampled, still one trace downstream


def served_once(tracer: OtelTracer, arrival: Arrival, request_id: str) -> dict[str, str]:
    """A request that arrived as ``arrival``, served by one attempt; the trace headers that
    attempt sent upstream."""
    life = recorder(tracer).begin(arrival, "chat", "chat")
    life.start(None)
    attempt = life.attempt("local", "llamacpp")
    with attempt.trace:
        sent = dict(trace_headers.get())
    attempt.end(None)
    tracer.finish(life, record(request_id=request_id))
    return sent


def test_the_sampler_is_the_one_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    otel_env(monkeypatch, {"OTEL_TRACES_SAMPLER": "always_off"})
    assert sampler_from_env() is ALWAYS_OFF


def test_a_new_trace_under_the_default_sampler_is_decided_without_asking_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OtelTracer does not call the default sampler for a new trace (a measurable share of
    tracing's cost on the event loop): it takes the decision the sampler would make."""
    otel_env(monkeypatch, {})
    assert sampler_from_env() is DEFAULT_ON
    decided = DEFAULT_ON.should_sample(None, 0x1234, "chat chat", SpanKind.SERVER, {"a": 1})
    assert decided.decision is Decision.RECORD_AND_SAMPLE
    assert dict(decided.attributes) == {"a": 1}  # the span's own: nothing added
    assert decided.trace_state is None
    exporter = InMemorySpanExporter()
    tracer = OtelTracer(SpanWriter([SimpleSpanProcessor(exporter)]), DEFAULT_ON)
    sent = served_once(tracer, Arrival.now("req-5"), "req-5")
    assert sent["traceparent"].endswith("-01")
    assert sorted(span.name for span in exporter.get_finished_spans()) == [
        "chat chat",
        "chat local",
    ]
