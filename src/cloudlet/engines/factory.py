"""Build the engines a spec asks for. llama.cpp is imported only when a model needs it."""

from __future__ import annotations

from cloudlet.config import ModelSpec, Spec
from cloudlet.engines.base import Engine


def build_engine(spec: ModelSpec) -> Engine:
    if spec.engine == "openai":
        from cloudlet.engines.openai_remote import OpenAIEngine

        return OpenAIEngine(spec)
    if spec.engine == "vllm":
        from cloudlet.engines.cluster import ClusterOnly

        return ClusterOnly(spec)
    if spec.kind == "embedding":
        from cloudlet.engines.llamacpp_embed import LlamaCppEmbeddingEngine

        return LlamaCppEmbeddingEngine(spec)
    from cloudlet.engines.llamacpp_batched import BatchedLlamaCppEngine

    return BatchedLlamaCppEngine(spec)


def build_engines(spec: Spec) -> dict[str, Engine]:
    return {model.name: build_engine(model) for model in spec.models}
