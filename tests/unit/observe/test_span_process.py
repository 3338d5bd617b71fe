"""The server's span exporter process: a real child (`python -m cloudlet.observe.span_process`)
exporting to a real OTLP receiver on loopback, started, killed, restarted and stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Iterator

import pytest

from cloudlet.gateway.life import Arrival, Recorder
from cloudlet.gateway.prices import Prices
from cloudlet.observe import span_process
from cloudlet.observe.span_process import SpanProcess
from cloudlet.observe.tracing import OtelTracer
from tests.otlp_receiver import OtlpReceiver
from tests.unit.observe.records import record
from tests.unit.observe.test_tracing import otel_env


def traced(spans: SpanProcess, request_id: str) -> None:
    """One request with one attempt, as the gateway traces it."""
    tracer = OtelTracer(spans)
    life = Recorder(Prices([], dict), tracer=tracer).begin(Arrival.now(request_id), "chat", "chat")
    life.start(None)
    life.attempt("local", "llamacpp").end(None)
    tracer.finish(life, record(request_id=request_id))


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    found = OtlpReceiver().start()
    otel_env(
        monkeypatch,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": found.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"},
    )
    yield found
    found.stop()


async def test_spans_go_through_the_child_to_the_collector(receiver: OtlpReceiver) -> None:
    spans = SpanProcess(["otlp"])
    for n in range(3):  # before the child runs: they wait for it
        traced(spans, f"req-early-{n}")
    await spans.start()
    for n in range(600):  # more than one batch
        traced(spans, f"req-{n}")
    await spans.close(wait_s=30)  # the child exports what is left, then exits

    got = receiver.wait_for(2 * 603)
    ids = {s.attributes["gen_ai.response.id"] for s in got if s.kind == "server"}
    assert ids == {f"req-{n}" for n in range(600)} | {f"req-early-{n}" for n in range(3)}
    assert len(got) == 2 * 603  # nothing lost, nothing doubled
    assert spans.dropped == 0
    servers = {s.span_id: s for s in got if s.kind == "server"}
    for attempt in (s for s in got if s.kind == "client"):
        assert servers[attempt.parent_span_id].trace_id == attempt.trace_id
        assert attempt.service == "cloudlet"


async def test_a_child_that_dies_is_started_again(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    spans = SpanProcess(["otlp"], restart_s=0.05)
    await spans.start()
    traced(spans, "req-before")
    first = await running(spans)
    first.kill()
    await first.wait()
    second = await running(spans, other_than=first)
    traced(spans, "req-after")
    await spans.close(wait_s=30)

    assert second.pid != first.pid
    assert "span exporter process exited" in caplog.text
    got = {s.attributes.get("gen_ai.response.id") for s in receiver.wait_for(2)}
    assert "req-after" in got  # "req-before" may have died with the first child


async def test_without_a_child_spans_wait_up_to_a_bound(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(span_process, "MAX_PENDING", 10)
    monkeypatch.setattr(span_process, "BATCH", 4)
    caplog.set_level(logging.WARNING, "cloudlet.observe.span_process")
    spans = SpanProcess(["console"])  # never started: the app's lifespan did not run
    for n in range(20):
        traced(spans, f"req-{n}")  # two spans each
    assert spans.dropped == 30  # 40 made, 10 kept
    assert "spans dropped" in caplog.text


async def test_stopping_does_not_wait_for_a_collector_that_never_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        port = silent.getsockname()[1]
        otel_env(
            monkeypatch,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "60",
            },
        )
        spans = SpanProcess(["otlp"])
        await spans.start()
        child = await running(spans)
        traced(spans, "req-1")
        await spans.close(wait_s=0.5)
    finally:
        silent.close()
    assert child.returncode is not None  # killed, not left behind
    assert "not exported within" in caplog.text


async def running(
    spans: SpanProcess, other_than: asyncio.subprocess.Process | None = None
) -> asyncio.subprocess.Process:
    """The child process, once one (other than ``other_than``) runs."""
    for _ in range(500):
        proc = spans._proc
        if proc is not None and proc is not other_than and proc.returncode is None:
            return proc
        await asyncio.sleep(0.01)
    raise AssertionError("no span exporter process started")


async def test_the_child_yields_the_cpu_to_the_server(receiver: OtlpReceiver) -> None:
    spans = SpanProcess(["otlp"])
    await spans.start()
    child = await running(spans)
    try:
        server = os.getpriority(os.PRIO_PROCESS, 0)
        for _ in range(500):  # it lowers its priority first thing
            if os.getpriority(os.PRIO_PROCESS, child.pid) != server:
                break
            await asyncio.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(server + span_process.NICE, 19)
    finally:
        await spans.close(wait_s=30)
