"""install(): the sinks and tracer an app gets from its spec and the OTEL_* environment, and a
request through a real app reaching them (in process, the fake engine)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloudlet.api import create_app
from cloudlet.config import Spec
from cloudlet.gateway import Gateway
from cloudlet.gateway.life import Recorder
from cloudlet.gateway.prices import Prices
from cloudlet.observe import Observability, install
from cloudlet.observe.access_log import ACCESS_LOGGER, AccessLog
from cloudlet.observe.metrics import RequestMetrics
from cloudlet.observe.tracing import OtelTracer
from tests.fakes import FakeChatEngine
from tests.unit.observe.test_tracing import otel_env


def installed(spec: Spec) -> tuple[Recorder, Observability]:
    gateway = Gateway({"fake": FakeChatEngine()}, spec)
    recorder = Recorder(Prices(spec.models, gateway.stats))
    return recorder, install(recorder, spec, CollectorRegistry(), gateway)


def sinks(recorder: Recorder) -> list[type]:
    return [type(s) for s in recorder.sinks._sinks]


async def test_the_spec_and_environment_choose_what_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    otel_env(monkeypatch, {})
    recorder, observe = installed(Spec(models=[]))
    assert sinks(recorder) == [RequestMetrics, AccessLog] and recorder.tracer is None
    async with observe:
        pass

    quiet = Spec.model_validate({"models": [], "server": {"access_log": False}})
    recorder, _ = installed(quiet)
    assert sinks(recorder) == [RequestMetrics]

    otel_env(monkeypatch, {"OTEL_TRACES_EXPORTER": "console"})
    recorder, observe = installed(Spec(models=[]))
    assert isinstance(recorder.tracer, OtelTracer)
    assert observe.spans is not None and observe.spans.exporters == ("console",)
    async with observe:
        child = observe.spans._proc
        assert child is not None and child.returncode is None  # the exporter process runs
    assert child.returncode == 0  # leaving stops it: it exported what was left and exited


async def test_a_request_through_the_app_is_counted_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    otel_env(monkeypatch, {})
    caplog.set_level(logging.INFO, ACCESS_LOGGER)
    app = create_app(
        Spec.model_validate({"models": [], "storage": {"ledger": "off"}}),
        {"fake": FakeChatEngine()},
        accounts=False,
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as client,
    ):
        for _ in range(500):  # the models load in the background
            if (await client.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        body = {"model": "fake", "messages": [{"role": "user", "content": "a secret question"}]}
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200
        metrics = (await client.get("/metrics")).text
    assert 'cloudlet_requests_total{error="",model="fake",status="ok",target="fake"} 1.0' in metrics
    (line,) = [rec.getMessage() for rec in caplog.records if rec.name == ACCESS_LOGGER]
    assert f"request_id={r.headers['x-request-id']} " in line and "target=fake" in line
    assert "secret" not in line
