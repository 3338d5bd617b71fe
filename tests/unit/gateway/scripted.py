"""Fakes for the gateway's unit tests: scripted engines, a fake clock and a fake sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from decimal import Decimal
from typing import Any

from cloudlet.config import ModelSpec, Spec
from cloudlet.config.remote import RouteSpec
from cloudlet.domain import (
    ChatMessage,
    EmbeddingResult,
    EngineStats,
    Finished,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    ModelInfo,
    ModelKind,
    TextDelta,
    Usage,
)
from cloudlet.errors import CloudletError, UpstreamError
from cloudlet.gateway import Gateway

Outcome = CloudletError | int | None  # raise before the stream / fail after n words / succeed


class FakeClock:
    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class ScriptedEngine:
    """Each call takes the next outcome from ``script`` (then succeeds)."""

    def __init__(
        self,
        name: str,
        words: Sequence[str] = ("a", "b"),
        *,
        kind: ModelKind = "chat",
        clock: FakeClock | None = None,
        ttft_s: float = 0.0,
    ) -> None:
        self._info = ModelInfo(ModelId(name), kind, "fake", 64, int(time.time()))
        self.words = list(words)
        self.script: list[Outcome] = []
        self.wait_s = 0.0
        self.calls = 0
        self.closed_streams = 0
        self.healthy = True
        self.clock = clock
        self.ttft_s = ttft_s
        self.requests: list[GenerationRequest] = []
        self.load_error: Exception | None = None

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def start(self) -> None:
        if self.load_error is not None:
            raise self.load_error

    async def close(self) -> None:
        return None

    def stats(self) -> EngineStats:
        return EngineStats(estimated_queue_wait_s=self.wait_s)

    def _outcome(self) -> Outcome:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else None
        if isinstance(outcome, CloudletError):
            raise outcome
        return outcome

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        fail_after = self._outcome()
        self.requests.append(request)
        return self._stream(fail_after)

    async def _stream(self, fail_after: int | None) -> AsyncGenerator[GenerationEvent, None]:
        try:
            if self.clock is not None:
                self.clock.now += self.ttft_s
            for i, word in enumerate(self.words):
                if fail_after is not None and i == fail_after:
                    raise UpstreamError(f"{self._info.id} broke off")
                yield TextDelta(word)
            yield Finished("stop", Usage(3, len(self.words)))
        finally:
            self.closed_streams += 1

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        self._outcome()
        return EmbeddingResult([[float(len(t))] for t in texts], prompt_tokens=2 * len(texts))

    async def probe(self, timeout_s: float) -> bool:
        return self.healthy


class Replicas(ScriptedEngine):
    """A model with several replicas, as the remote engine has."""

    def __init__(self, name: str, replicas: Sequence[ScriptedEngine]) -> None:
        super().__init__(name)
        self._replicas = list(replicas)

    @property
    def replicas(self) -> Sequence[ScriptedEngine]:
        return self._replicas


NO_CHECKS = {"interval_s": 0}  # tests run health-check rounds themselves


def local(name: str, **extra: Any) -> ModelSpec:
    return ModelSpec(name=name, source="file:///models/x.gguf", health_check=NO_CHECKS, **extra)


def cloud(name: str, per_mtok: int = 1_000_000, **extra: Any) -> ModelSpec:
    """A priced cloud model; at the default price every token costs one dollar."""
    price = {"input_per_mtok": Decimal(per_mtok), "output_per_mtok": Decimal(per_mtok)}
    extra.setdefault("health_check", NO_CHECKS)
    return ModelSpec(
        name=name, engine="openai", url="http://127.0.0.1:9/v1", cloud=True, price=price, **extra
    )


def remote(name: str, **extra: Any) -> ModelSpec:
    extra.setdefault("health_check", NO_CHECKS)
    return ModelSpec(name=name, engine="openai", url="http://127.0.0.1:9/v1", **extra)


def gateway(
    engines: dict[str, ScriptedEngine],
    models: list[ModelSpec],
    routes: list[dict[str, Any]],
    clock: FakeClock,
    seed: int = 7,
) -> Gateway:
    import random

    spec = Spec(models=models, routes=[RouteSpec.model_validate(r) for r in routes])
    return Gateway(engines, spec, clock=clock, sleep=clock.sleep, rng=random.Random(seed))


def ask(model: str, text: str = "hi", max_tokens: int | None = 2) -> GenerationRequest:
    return GenerationRequest(
        model=ModelId(model), messages=(ChatMessage("user", text),), max_tokens=max_tokens
    )


async def drain(events: AsyncGenerator[GenerationEvent, None]) -> str:
    return "".join([e.text async for e in events if isinstance(e, TextDelta)])
