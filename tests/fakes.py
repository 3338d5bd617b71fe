"""A scripted chat engine and embedding engine for in-process tests of the layers above engines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence

from cloudlet.domain import (
    EmbeddingResult,
    EngineStats,
    Finished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    ModelInfo,
    TextDelta,
    Usage,
)
from cloudlet.errors import CloudletError, ContextLengthExceeded


class FakeChatEngine:
    """Streams ``words`` (one event each, for each of a request's ``n`` choices).
    ``fail_before``/``fail_after`` inject errors."""

    def __init__(
        self,
        name: str = "fake",
        words: Sequence[str] = ("Hello", " world", "!"),
        *,
        context: int = 64,
        fail_before: CloudletError | None = None,
        fail_after: int | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self._info = ModelInfo(ModelId(name), "chat", "fake", context, int(time.time()))
        self.words = list(words)
        self.fail_before = fail_before
        self.fail_after = fail_after
        self.gate = gate
        self.started = self.closed = False
        self.requests: list[GenerationRequest] = []
        self.cancelled = 0
        self.load_error: Exception | None = None

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def start(self) -> None:
        if self.load_error is not None:
            raise self.load_error
        self.started = True

    async def close(self) -> None:
        self.closed = True

    def stats(self) -> EngineStats:
        return EngineStats(requests_total=len(self.requests))

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        if self.fail_before is not None:
            raise self.fail_before
        prompt_tokens = sum(len(m.content.split()) for m in request.messages or ()) or len(
            (request.prompt or "").split()
        )
        if prompt_tokens + (request.max_tokens or 0) > self._info.context_length:
            raise ContextLengthExceeded("too long", param="messages")
        self.requests.append(request)
        return self._stream(request, prompt_tokens)

    async def _stream(
        self, request: GenerationRequest, prompt_tokens: int
    ) -> AsyncGenerator[GenerationEvent, None]:
        limit = request.max_tokens or len(self.words)
        sent = 0
        finished = False
        try:
            for i, word in enumerate(self.words[:limit]):
                if self.fail_after is not None and i == self.fail_after:
                    raise RuntimeError("engine exploded")
                if self.gate is not None:
                    await self.gate.wait()
                await asyncio.sleep(0)
                sent += 1
                for choice in range(request.n):  # n choices: the same words, interleaved
                    yield TextDelta(word, choice=choice)
            finished = True
            reason: FinishReason = "length" if limit < len(self.words) else "stop"
            reasons = (reason,) * request.n if request.n > 1 else ()
            yield Finished(reason, Usage(prompt_tokens, sent * request.n), reasons)
        finally:
            if not finished:
                self.cancelled += 1


class FakeEmbeddingEngine:
    def __init__(self, name: str = "fake-embed", dim: int = 4) -> None:
        self._info = ModelInfo(ModelId(name), "embedding", "fake", 16, int(time.time()))
        self.dim = dim

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def stats(self) -> EngineStats:
        return EngineStats()

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        vectors = [[float(len(t))] + [0.0] * (self.dim - 1) for t in texts]
        return EmbeddingResult(vectors=vectors, prompt_tokens=sum(len(t.split()) for t in texts))
