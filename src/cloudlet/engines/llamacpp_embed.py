"""The embedded llama.cpp embedding engine (``/v1/embeddings``), e.g. all-MiniLM-L6-v2.

A sentence-transformers checkpoint (.zip or folder) is converted to GGUF once
(:mod:`cloudlet.engines.minilm_gguf`, cached); a ``.gguf`` source is loaded as is. All llama.cpp
work runs on one dedicated thread, so the event loop never blocks and the model is never used
by two threads at once. A request embeds its whole list in one ``Llama.embed`` call: llama.cpp
packs several sequences into one batch, which measured ~1.4x faster than one call per text.
Requests beyond the one running wait in a bounded queue; past ``queue_size`` they are refused
with :class:`EngineOverloaded` rather than piling up.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
from llama_cpp import Llama

from cloudlet.config import ModelSpec
from cloudlet.domain import EmbeddingResult, EngineStats, ModelId, ModelInfo
from cloudlet.engines.llamacpp_logging import captured_prints, route_llama_logs
from cloudlet.engines.llamacpp_safe import first_decode, llama_class_params
from cloudlet.engines.minilm_gguf import convert
from cloudlet.engines.sources import resolve_source
from cloudlet.errors import ContextLengthExceeded, EngineError, EngineOverloaded, EngineUnavailable

# Pooling types that turn token vectors into one sentence vector (llama.h's enum).
_SENTENCE_POOLING = (
    llama_cpp.LLAMA_POOLING_TYPE_MEAN,
    llama_cpp.LLAMA_POOLING_TYPE_CLS,
    llama_cpp.LLAMA_POOLING_TYPE_LAST,
)


@dataclass(frozen=True, slots=True)
class _Batch:
    vectors: list[list[float]]
    tokens: int
    seconds: float


class LlamaCppEmbeddingEngine:
    """An :class:`~cloudlet.engines.base.EmbeddingEngine` on llama-cpp-python's ``Llama``."""

    def __init__(
        self, spec: ModelSpec, *, cache_dir: Path | None = None, safe_mode: bool | None = None
    ) -> None:
        self._spec = spec
        self._safe = spec.safe_mode == "on" if safe_mode is None else safe_mode
        self._cache_dir = cache_dir
        self._created = int(time.time())
        self._context = spec.context
        self._llm: Llama | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._pending = 0  # admitted requests: waiting plus running
        self._running = 0
        self._requests = 0
        self._tokens = 0
        self._busy_s = 0.0

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            id=ModelId(self._spec.name),
            kind="embedding",
            engine="llamacpp",
            context_length=self._context,
            created=self._created,
            source=self._spec.source,
            capabilities=("embeddings",),
        )

    async def start(self) -> None:
        """Resolve, convert if needed (cached) and load the model on the engine's thread."""
        if self._llm is not None:
            return
        executor = ThreadPoolExecutor(1, thread_name_prefix=f"embed-{self._spec.name}")
        try:
            loop = asyncio.get_running_loop()
            llm, self._context = await loop.run_in_executor(executor, self._load)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._llm, self._executor = llm, executor
        # The first decode happens here, not on a client's request: a CPU kernel that crashes
        # does so while the model loads, where the supervisor can restart it in safe mode.
        first_decode(safe=self._safe)
        await self.embed(["cloudlet warms up the engine with one short sentence."])
        self._requests = self._tokens = 0
        self._busy_s = 0.0

    async def close(self) -> None:
        """Release the model after the request in flight (if any); later calls do nothing."""
        llm, executor = self._llm, self._executor
        self._llm, self._executor = None, None
        if executor is None:
            return
        if llm is not None:
            await asyncio.get_running_loop().run_in_executor(executor, llm.close)
        executor.shutdown(wait=False)

    def stats(self) -> EngineStats:
        per_request = self._busy_s / self._requests if self._requests else 0.0
        waiting = self._pending - self._running
        return EngineStats(
            queue_depth=waiting,
            running=self._running,
            capacity=1,
            tokens_per_second=self._tokens / self._busy_s if self._busy_s else 0.0,
            estimated_queue_wait_s=waiting * per_request,
            prompt_tokens_evaluated=self._tokens,
            requests_total=self._requests,
        )

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        """One L2-normalised vector per text; ``prompt_tokens`` counts [CLS] and [SEP] too."""
        llm = self._llm
        if llm is None:
            raise EngineUnavailable(f"model {self._spec.name} is not loaded")
        batch = [texts] if isinstance(texts, str) else list(texts)
        if not batch:
            return EmbeddingResult(vectors=[], prompt_tokens=0)
        if self._pending >= 1 + self._spec.queue_size:
            raise EngineOverloaded(f"model {self._spec.name} has too many requests waiting")
        self._pending += 1
        try:
            async with self._lock:
                executor = self._executor
                if self._llm is not llm or executor is None:
                    raise EngineUnavailable(f"model {self._spec.name} was closed")
                self._running = 1
                try:
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(executor, self._embed_blocking, llm, batch)
                finally:
                    self._running = 0
        finally:
            self._pending -= 1
        self._requests += 1
        self._tokens += result.tokens
        self._busy_s += result.seconds
        return EmbeddingResult(vectors=result.vectors, prompt_tokens=result.tokens)

    # -- on the engine thread ------------------------------------------------------------------

    def _load(self) -> tuple[Llama, int]:
        path = resolve_source(self._spec.source)
        if path.suffix == ".gguf":
            model = path
        elif path.is_dir() or path.suffix == ".zip":
            model = convert(path, cache_dir=self._cache_dir)
        else:
            raise EngineUnavailable(f"model source {self._spec.source}: expected .gguf or .zip")
        trained, pooling = _gguf_facts(model)
        # Positions past the trained length do not exist in BERT's position table.
        context = min(self._spec.context, trained) if trained else self._spec.context
        threads = self._spec.threads or _default_threads()
        route_llama_logs()
        try:
            # verbose=True keeps llama-cpp-python from dup2-ing the process's stderr while it
            # loads (its C log already goes to our logger); afterwards it must stay quiet.
            with captured_prints(self._spec.name), llama_class_params(safe=self._safe):
                llm = Llama(
                    model_path=str(model),
                    embedding=True,
                    pooling_type=(
                        llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED
                        if pooling in _SENTENCE_POOLING
                        else llama_cpp.LLAMA_POOLING_TYPE_MEAN
                    ),
                    n_ctx=context,
                    # Non-causal attention needs a whole sequence in one micro-batch.
                    n_batch=context,
                    n_ubatch=context,
                    n_threads=threads,
                    n_threads_batch=threads,
                    verbose=True,
                )
        except (ValueError, RuntimeError) as exc:
            raise EngineUnavailable(f"llama.cpp could not load {model}: {exc}") from exc
        llm.verbose = False
        return llm, context

    def _embed_blocking(self, llm: Llama, texts: list[str]) -> _Batch:
        for index, text in enumerate(texts):
            count = len(llm.tokenize(text.encode("utf-8")))
            if count > self._context:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {self._context} tokens, however "
                    f"input[{index}] has {count} tokens. Please reduce the length of the input.",
                    param="input",
                )
        started = time.perf_counter()
        try:
            raw, tokens = llm.embed(texts, truncate=False, return_count=True)
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"llama.cpp failed to embed the input: {exc}") from exc
        matrix = np.asarray(raw, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        vectors: list[list[float]] = (matrix / np.maximum(norms, 1e-12)).tolist()
        return _Batch(vectors=vectors, tokens=int(tokens), seconds=time.perf_counter() - started)


def _default_threads() -> int:
    """Half the cores, at most 4: a 6-layer, 384-wide model gains little from more, and the
    chat engine in the same process needs the rest (oversubscribed llama.cpp threads spin and
    collapse throughput: measured 163 -> 6 texts/s with 2 threads on a busy 2-core machine)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _gguf_facts(path: Path) -> tuple[int | None, int | None]:
    """The trained context length and pooling type a GGUF file declares (None when absent)."""
    try:
        reader = gguf.GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise EngineUnavailable(f"{path} is not a readable GGUF file: {exc}") from exc

    def number(key: str) -> int | None:
        field = reader.get_field(key)
        return None if field is None else int(field.contents())

    arch_field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    arch = str(arch_field.contents()) if arch_field is not None else ""
    return (
        number(gguf.Keys.LLM.CONTEXT_LENGTH.format(arch=arch)),
        number(gguf.Keys.LLM.POOLING_TYPE.format(arch=arch)),
    )
