"""The embedded llama.cpp chat engine: one model in-process, one sequence at a time.

Requests wait in a bounded FIFO queue and run one by one on a dedicated thread (llama.cpp calls
block and release the GIL). Tokens travel back to the event loop as they are sampled, so
streaming has no buffering; closing a stream sets a flag the thread checks after every token,
which stops generation and frees the model for the next request. llama.cpp reuses the KV cache
for the prompt prefix the previous request shared with this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_grammar import LlamaGrammar

from cloudlet.config import ModelSpec
from cloudlet.domain import (
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
from cloudlet.engines.llamacpp_common import (
    PromptRenderer,
    default_threads,
    grammar_for,
    sampling_kwargs,
)
from cloudlet.engines.llamacpp_logging import captured_prints, route_llama_logs
from cloudlet.engines.sources import resolve_source
from cloudlet.engines.textstream import StopScanner, TextAssembler
from cloudlet.errors import ContextLengthExceeded, EngineError, EngineOverloaded, EngineUnavailable

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    tokens: list[int]
    max_tokens: int
    grammar: LlamaGrammar | None
    events: asyncio.Queue[GenerationEvent | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)


class LlamaCppEngine:
    """A :class:`~cloudlet.engines.base.ChatEngine` on llama-cpp-python's ``Llama``."""

    def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self._info = ModelInfo(
            id=ModelId(spec.name),
            kind="chat",
            engine="llamacpp",
            context_length=spec.context,
            created=int(time.time()),
            source=spec.source,
        )
        self._llm: Llama | None = None
        self._renderer: PromptRenderer | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"llama-{spec.name}")
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._running = 0
        self._requests = 0
        self._evaluated = 0
        self._cached = 0
        self._tps = 0.0
        self._job_seconds = 0.0

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def start(self) -> None:
        path = resolve_source(self._spec.source)
        route_llama_logs()
        loop = asyncio.get_running_loop()
        try:
            self._llm = await loop.run_in_executor(self._executor, self._load, str(path))
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineUnavailable(f"cannot load {path}: {exc}") from exc
        self._renderer = PromptRenderer(self._llm)
        self._worker = asyncio.create_task(self._work(), name=f"engine-{self._spec.name}")

    def _load(self, path: str) -> Llama:
        # verbose=True keeps llama-cpp-python from redirecting the process's fds while loading
        # (its C log already goes to our logger); its Python prints are captured instead.
        with captured_prints(self._spec.name):
            llm = Llama(
                model_path=path,
                n_ctx=self._spec.context,
                n_threads=self._spec.threads or default_threads(),
                n_batch=min(512, self._spec.context),
                verbose=True,
            )
        llm.verbose = False
        return llm

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            job.events.put_nowait(EngineUnavailable("the server is shutting down"))
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, llm.close)
        self._executor.shutdown(wait=False)

    def stats(self) -> EngineStats:
        waiting = self._queue.qsize()
        return EngineStats(
            queue_depth=waiting,
            running=self._running,
            capacity=1,
            tokens_per_second=self._tps,
            estimated_queue_wait_s=self._job_seconds * (waiting + self._running),
            prompt_tokens_evaluated=self._evaluated,
            prompt_tokens_cached=self._cached,
            requests_total=self._requests,
        )

    # --- admission -------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        if self._llm is None or self._renderer is None or self._worker is None:
            raise EngineUnavailable(f"model {self._spec.name!r} is not loaded")
        tokens = self._renderer.tokens(request)
        n_ctx = self._spec.context
        room = n_ctx - len(tokens)
        max_tokens = request.max_tokens or min(self._spec.max_tokens_default, max(room, 0))
        if room <= 0 or max_tokens > room:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                f"{len(tokens) + max_tokens} tokens ({len(tokens)} in the prompt, {max_tokens} "
                "in the completion). Please reduce the length of the prompt or of max_tokens.",
                param="messages" if request.messages is not None else "prompt",
            )
        if self._queue.qsize() >= self._spec.queue_size:
            raise EngineOverloaded(
                f"model {self._spec.name!r} has {self._queue.qsize()} requests waiting; "
                "retry later",
                retry_after=round(self.stats().estimated_queue_wait_s) + 1,
            )
        job = _Job(request, tokens, max_tokens, grammar_for(request.response_format))
        self._requests += 1
        self._queue.put_nowait(job)
        return self._stream(job)

    async def _stream(self, job: _Job) -> AsyncGenerator[GenerationEvent, None]:
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            job.cancelled.set()  # no-op once finished; stops the thread when the client left

    # --- the worker ----------------------------------------------------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = await self._queue.get()
            if job.cancelled.is_set():
                continue
            self._running = 1
            started = time.monotonic()
            try:
                done = await loop.run_in_executor(self._executor, self._run, job, loop)
            except Exception as exc:  # llama.cpp failed mid-request: fail this one, keep serving
                job.events.put_nowait(EngineError(f"generation failed: {exc}"))
                done = 0
            finally:
                self._running = 0
            elapsed = time.monotonic() - started
            self._job_seconds = (
                0.8 * self._job_seconds + 0.2 * elapsed if self._job_seconds else elapsed
            )
            if done and elapsed > 0:
                rate = done / elapsed
                self._tps = 0.8 * self._tps + 0.2 * rate if self._tps else rate

    def _run(self, job: _Job, loop: asyncio.AbstractEventLoop) -> int:
        """Runs on the engine thread; returns the number of tokens generated."""
        llm = self._llm
        assert llm is not None
        emit = job.events.put_nowait
        cached = _common_prefix(llm, job.tokens)
        self._cached += cached
        self._evaluated += len(job.tokens) - cached
        seed = job.request.sampling.seed
        llm.set_seed(seed if seed is not None else random.getrandbits(31))
        vocab = llm._model.vocab
        text = TextAssembler()
        stops = StopScanner(job.request.stop)
        count = 0
        reason: FinishReason = "length"
        hit_stop_string = False
        for token in llm.generate(job.tokens, grammar=job.grammar, **sampling_kwargs(job.request)):
            if job.cancelled.is_set():
                reason = "cancelled"
                break
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                reason = "stop"
                break
            count += 1
            piece, stopped = stops.feed(text.feed(llm.detokenize([token])))
            if piece:
                loop.call_soon_threadsafe(emit, TextDelta(piece))
            if stopped:
                reason, hit_stop_string = "stop", True
                break
            if count >= job.max_tokens:
                break
        if not hit_stop_string:
            tail = stops.feed(text.flush())[0] + stops.flush()
            if tail:
                loop.call_soon_threadsafe(emit, TextDelta(tail))
        usage = Usage(prompt_tokens=len(job.tokens), completion_tokens=count)
        loop.call_soon_threadsafe(emit, Finished(reason, usage))
        return count


def _common_prefix(llm: Llama, tokens: list[int]) -> int:
    """How many leading prompt tokens are already in the KV cache (llama.cpp reuses them)."""
    cached = 0
    for a, b in zip(llm.input_ids[: llm.n_tokens], tokens, strict=False):
        if a != b:
            break
        cached += 1
    return min(cached, len(tokens) - 1)
