"""Plain data that every layer shares: requests, events, statistics. No I/O, no frameworks."""

from cloudlet.domain.types import (
    ChatMessage,
    EmbeddingResult,
    EngineStats,
    Finished,
    FinishReason,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    ModelInfo,
    ModelKind,
    ResponseFormat,
    SamplingParams,
    TextDelta,
    Usage,
    WorkerState,
)

__all__ = [
    "ChatMessage",
    "EmbeddingResult",
    "EngineStats",
    "FinishReason",
    "Finished",
    "GenerationEvent",
    "GenerationRequest",
    "ModelId",
    "ModelInfo",
    "ModelKind",
    "ResponseFormat",
    "SamplingParams",
    "TextDelta",
    "Usage",
    "WorkerState",
]
