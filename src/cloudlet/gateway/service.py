"""The gateway: one object the API layer talks to, owning the engines for the app's lifetime.

Today's pipeline is resolve → check kind → admit; tenancy, policy, limits, routing and metering
plug in here, between the API's parsing and the engine call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence

from cloudlet.domain import (
    EmbeddingResult,
    EngineStats,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    ModelInfo,
)
from cloudlet.engines.base import ChatEngine, EmbeddingEngine, Engine
from cloudlet.errors import EngineUnavailable, ModelNotFound, WrongModelKind

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, engines: Mapping[str, Engine]) -> None:
        self._engines = dict(engines)
        self._loaded: set[str] = set()
        self._failed: dict[str, str] = {}

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every engine; one that fails is reported and stays unavailable."""
        for name, engine in self._engines.items():
            try:
                await engine.start()
            except Exception as exc:  # a model that cannot load must not take the others down
                log.exception("model %s failed to load", name)
                self._failed[name] = str(exc)
            else:
                self._loaded.add(name)
                log.info("model %s ready (%s)", name, engine.info.engine)

    async def close(self) -> None:
        await asyncio.gather(*(e.close() for e in self._engines.values()), return_exceptions=True)
        self._loaded.clear()

    @property
    def ready(self) -> bool:
        return bool(self._engines) and len(self._loaded) == len(self._engines)

    def status(self) -> dict[str, str]:
        """Per model: ``ready``, ``loading`` or ``failed: <why>``."""
        return {
            name: "ready"
            if name in self._loaded
            else (f"failed: {self._failed[name]}" if name in self._failed else "loading")
            for name in self._engines
        }

    def stats(self) -> dict[str, EngineStats]:
        return {name: engine.stats() for name, engine in self._engines.items()}

    # --- models ----------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [e.info for e in self._engines.values()]

    def model(self, model: str) -> ModelInfo:
        return self._engine(model).info

    def engine(self, model: str) -> Engine:
        return self._engine(model)

    def _engine(self, model: str) -> Engine:
        engine = self._engines.get(model)
        if engine is None:
            raise ModelNotFound(model)
        return engine

    def _ready_engine(self, model: str) -> Engine:
        engine = self._engine(model)
        if model not in self._loaded:
            why = self._failed.get(model)
            raise EngineUnavailable(
                f"model {model!r} " + (f"failed to load: {why}" if why else "is still loading"),
                retry_after=5 if why is None else 60,
            )
        return engine

    # --- requests --------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        engine = self._ready_engine(request.model)
        if not isinstance(engine, ChatEngine):
            raise WrongModelKind(
                f"model {request.model!r} is an {engine.info.kind} model; "
                "it cannot generate text (use /v1/embeddings)",
                param="model",
            )
        return await engine.generate(request)

    async def embed(self, model: ModelId, texts: Sequence[str]) -> EmbeddingResult:
        engine = self._ready_engine(model)
        if not isinstance(engine, EmbeddingEngine):
            raise WrongModelKind(
                f"model {model!r} is a {engine.info.kind} model; it does not make embeddings",
                param="model",
            )
        return await engine.embed(texts)
