"""Build the engines a spec asks for. llama.cpp is imported only when a model needs it."""

from __future__ import annotations

from cloudlet.config import ModelSpec, Spec
from cloudlet.engines.base import Engine


def build_engine(
    spec: ModelSpec, *, in_process: bool = False, safe_mode: bool | None = None
) -> Engine:
    """The engine for one model. A ``llamacpp`` model runs in a supervised worker process
    (:mod:`cloudlet.engines.worker`) unless ``in_process`` (only the worker itself: a kernel
    fault would kill the process that loads the model); ``safe_mode`` then overrides the spec's
    (llama.cpp's extra CPU buffer types off)."""
    if spec.engine == "openai":
        from cloudlet.engines.openai_remote import OpenAIEngine

        return OpenAIEngine(spec)
    if spec.engine == "vllm":
        from cloudlet.engines.cluster import ClusterOnly

        return ClusterOnly(spec)
    if not in_process:
        from cloudlet.engines.worker import WorkerEngine

        return WorkerEngine(spec)
    if spec.kind == "embedding":
        from cloudlet.engines.llamacpp_embed import LlamaCppEmbeddingEngine

        return LlamaCppEmbeddingEngine(spec, safe_mode=safe_mode)
    from cloudlet.engines.llamacpp_batched import BatchedLlamaCppEngine

    return BatchedLlamaCppEngine(spec, safe_mode=safe_mode)


def build_engines(spec: Spec) -> dict[str, Engine]:
    return {model.name: build_engine(model) for model in spec.models}
