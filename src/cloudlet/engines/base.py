"""The engine protocol: what the gateway needs from anything that runs a model.

An engine is created from a :class:`~cloudlet.config.ModelSpec`, started in the app's lifespan
and closed at shutdown. ``generate`` admits a request *before* it returns (so errors such as a
too-long prompt or a full queue surface before any byte is sent) and hands back a stream of
events: zero or more :class:`TextDelta` then exactly one :class:`Finished`. Closing the stream
early (``aclose``) cancels the generation and frees the engine's slot.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Protocol, runtime_checkable

from cloudlet.domain import (
    EmbeddingResult,
    EngineStats,
    GenerationEvent,
    GenerationRequest,
    ModelInfo,
)


@runtime_checkable
class Engine(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    async def start(self) -> None:
        """Load the model. Called once, in the app's lifespan."""

    async def close(self) -> None:
        """Stop work and release the model. Idempotent."""

    def stats(self) -> EngineStats: ...


@runtime_checkable
class ChatEngine(Engine, Protocol):
    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        """Admit ``request`` and return its event stream (see the module docstring)."""
        ...


@runtime_checkable
class EmbeddingEngine(Engine, Protocol):
    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """One L2-normalised vector per text, in order."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """An engine that knows its model's tokenizer and chat template (a local model)."""

    async def count_tokens(self, request: GenerationRequest) -> list[int]:
        """The tokens of ``request``'s prompt, exactly as ``generate`` would evaluate them."""
        ...
