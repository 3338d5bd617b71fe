"""The embedded llama.cpp chat engine with continuous batching: many streams, one model.

This engine drives llama.cpp's low-level API: one context whose KV cache holds up to
``parallel`` sequences, decoded together in one ``llama_batch`` per step by
:class:`~cloudlet.engines.llamacpp_scheduler.Scheduler` on a dedicated thread. A batch of 8
tokens costs little more than a batch of 1 on a CPU (the weights are read once per step), so
aggregate throughput grows with the number of streams while each stream keeps streaming.

It implements :class:`~cloudlet.engines.base.ChatEngine`: errors (a too-long prompt, a full
queue, a bad schema) are raised by ``generate`` before the stream starts, the stream yields
``TextDelta``\\ s then one ``Finished``, and closing it cancels the sequence.

KV layout: one KV stream of ``context`` cells per sequence (``kv_unified`` off; ``context *
parallel`` cells in all), as llama-server lays it out. Each token then attends only to its own
sequence's cells; in a unified buffer every token scans every sequence's cells (the cached
prompts of idle slots included), which made decoding up to ~2x slower here, and llama.cpp's CPU
flash attention gave results that depend on where cells sit in the buffer (shared prefix cells
after a sequence's own), so a seeded request would not repeat. The price: a prefix is shared
between slots by copying a whole stream, not by tagging cells; see the scheduler. Every
admitted request fits its stream, so none is ever preempted.

A request for ``n`` choices is ``n`` jobs submitted together: the first evaluates the prompt;
the others wait until it has, then take a copy of its cells and sample their first token from
its logits, each with its own sampler (see ``Scheduler._fork``): the prompt is evaluated once
for all of them. Their events come back as one stream (:mod:`~cloudlet.engines.llamacpp_stream`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import llama_cpp
from llama_cpp._internals import LlamaModel

from cloudlet.config import ModelSpec
from cloudlet.domain import (
    EngineStats,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    ModelInfo,
)
from cloudlet.engines.llamacpp_common import (
    PromptRenderer,
    default_threads,
    grammar_for,
    tool_grammar,
    tool_triggers,
)
from cloudlet.engines.llamacpp_logging import route_llama_logs
from cloudlet.engines.llamacpp_safe import first_decode, model_params
from cloudlet.engines.llamacpp_sampling import SamplerChain
from cloudlet.engines.llamacpp_scheduler import Scheduler
from cloudlet.engines.llamacpp_slots import BatchJob, Event
from cloudlet.engines.llamacpp_stream import JobsStream
from cloudlet.engines.sources import resolve_source
from cloudlet.engines.toolcalls import wants_tools
from cloudlet.errors import (
    ContextLengthExceeded,
    EngineOverloaded,
    EngineUnavailable,
    InvalidRequest,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# On a CPU a decode step is bound by reading the weights; up to ~8 sequences share that read
# almost for free, beyond it each stream slows down about linearly. GPUs keep gaining longer.
CPU_PARALLEL = 8
GPU_PARALLEL = 16
KV_MEMORY_SHARE = 4  # the default parallel keeps the KV cache under 1/4 of physical memory
TYPICAL_PROMPT = 64  # prompt tokens of the job the idle prior assumes
MAX_BATCH = 512  # tokens per decode step: the decoding sequences plus prompt chunks
# Host memory for saved prompt states (chat histories that outlive their slot): 1/16 of the
# machine's memory, at most 2 GiB; it fills only as slots drop prompts.
PROMPT_CACHE_SHARE = 16
PROMPT_CACHE_MAX = 2 << 30
# Templating, tokenizing and grammar compiling of one request, on a worker thread. The size
# check before it bounds the work; this bounds the wait when the machine is swamped.
PREPARE_TIMEOUT_S = 30.0


def default_parallel(kv_bytes_per_sequence: int, memory_bytes: int | None = None) -> int:
    """Concurrent sequences for a model whose spec leaves ``parallel`` unset.

    8 on a CPU, 16 with a GPU, fewer when ``parallel`` full-context KV caches would take more
    than a quarter of the machine's memory.
    """
    wanted = GPU_PARALLEL if llama_cpp.llama_supports_gpu_offload() else CPU_PARALLEL
    memory = memory_bytes if memory_bytes is not None else _physical_memory()
    if memory and kv_bytes_per_sequence > 0:
        wanted = min(wanted, memory // KV_MEMORY_SHARE // kv_bytes_per_sequence)
    return max(1, int(wanted))


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def kv_bytes_per_token(model: Any) -> int:
    """f16 K and V for every layer (llama.cpp's default cache type)."""
    n_layer = llama_cpp.llama_model_n_layer(model)
    n_head = max(1, llama_cpp.llama_model_n_head(model))
    head_dim = llama_cpp.llama_model_n_embd(model) // n_head
    return int(n_layer * 2 * llama_cpp.llama_model_n_head_kv(model) * head_dim * 2)


class BatchedLlamaCppEngine:
    """A :class:`~cloudlet.engines.base.ChatEngine` on llama.cpp's batched low-level API."""

    def __init__(self, spec: ModelSpec, *, safe_mode: bool | None = None) -> None:
        self._spec = spec
        self._safe = spec.safe_mode == "on" if safe_mode is None else safe_mode
        self._info = ModelInfo(
            id=ModelId(spec.name),
            kind="chat",
            engine="llamacpp",
            context_length=spec.context,
            created=int(time.time()),
            source=spec.source,
            capabilities=("chat", "tools"),  # no images: llama.cpp's mtmd path is not wired
        )
        self._model: Any = None  # llama_cpp._internals.LlamaModel (untyped)
        self._ctx: Any = None
        self._renderer: PromptRenderer | None = None
        self._scheduler: Scheduler | None = None
        self._parallel = spec.parallel or CPU_PARALLEL
        self._requests = 0
        # One thread of its own: templating and tokenizing one request at a time, never beside
        # another request's (llama.cpp's tokenizer state is not shared safely between threads).
        self._preparer = ThreadPoolExecutor(1, thread_name_prefix=f"prepare-{spec.name}")

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def parallel(self) -> int:
        """Concurrent sequences (the spec's, or the machine's default once started)."""
        return self._parallel

    async def start(self) -> None:
        path = resolve_source(self._spec.source)
        route_llama_logs()
        try:
            await asyncio.to_thread(self._load, str(path))
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineUnavailable(f"cannot load {path}: {exc}") from exc
        assert self._model is not None
        self._renderer = PromptRenderer(self._model)
        n_batch = max(MAX_BATCH, self._parallel)
        self._scheduler = Scheduler(
            self._ctx,
            self._model.vocab,
            parallel=self._parallel,
            n_batch=n_batch,
            prompt_cache_bytes=min(_physical_memory() // PROMPT_CACHE_SHARE, PROMPT_CACHE_MAX),
            loop=asyncio.get_running_loop(),
            name=self._spec.name,
        )
        first_decode(safe=self._safe)  # the test-only fault hook fires here, outside the thread
        self._scheduler.start()
        # The first decode (the warm-up, which also measures the job prior) runs before the
        # engine reports ready: a CPU kernel that crashes does so while the model loads, where
        # the supervisor restarts the worker in safe mode, not on a client's first request.
        await self._scheduler.warmed()  # the job prior, so spill works from the first burst

    def _load(self, path: str) -> None:
        """Load the weights and create the context (on a worker thread: this blocks)."""
        params = model_params(safe=self._safe)
        # verbose=True keeps llama-cpp-python from redirecting the process's fds while loading;
        # llama.cpp's log already goes to our logger.
        model: Any = LlamaModel(path_model=path, params=params, verbose=True)
        try:
            if self._spec.parallel is None:
                per_sequence = kv_bytes_per_token(model.model) * self._spec.context
                self._parallel = default_parallel(per_sequence)
            cparams = llama_cpp.llama_context_default_params()
            cparams.n_ctx = self._spec.context * self._parallel
            cparams.n_batch = cparams.n_ubatch = max(MAX_BATCH, self._parallel)
            cparams.n_seq_max = self._parallel
            cparams.kv_unified = False  # one stream per sequence: see the module docstring
            cparams.n_threads = cparams.n_threads_batch = self._spec.threads or default_threads()
            cparams.no_perf = True
            ctx = llama_cpp.llama_init_from_model(model.model, cparams)
            if not ctx:
                raise RuntimeError(
                    f"llama.cpp could not create a context of {cparams.n_ctx} tokens "
                    f"({self._parallel} sequences of {self._spec.context})"
                )
            if llama_cpp.llama_n_ctx_seq(ctx) < self._spec.context:  # admission relies on it
                llama_cpp.llama_free(ctx)
                raise RuntimeError(f"llama.cpp gave sequences less than {self._spec.context} cells")
        except BaseException:
            model.close()
            raise
        self._model, self._ctx = model, ctx
        log.info(
            "model %s: %d parallel sequences of %d tokens (KV cache of %d cells)",
            self._spec.name,
            self._parallel,
            self._spec.context,
            cparams.n_ctx,
        )

    async def close(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.stop()
            await asyncio.to_thread(scheduler.join)
        self._preparer.shutdown(wait=False, cancel_futures=True)
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            llama_cpp.llama_free(ctx)
        model, self._model = self._model, None
        if model is not None:
            model.close()
        self._renderer = None

    def stats(self) -> EngineStats:
        """Load for the router and metrics.

        ``tokens_per_second`` is the aggregate generation rate while busy, over the decode steps
        of the last ten seconds (it holds its last value when idle, which is what a router
        estimating a wait needs). ``estimated_queue_wait_s`` is how long a request arriving
        now would wait for a slot.
        """
        scheduler = self._scheduler
        if scheduler is None:
            return EngineStats(capacity=self._parallel, requests_total=self._requests)
        s = scheduler.stats
        outstanding = s.outstanding
        waiting = max(0, outstanding - self._parallel)
        # A new request gets a slot after `waiting + 1` of the running jobs end; with every
        # slot busy they end `parallel` per average job duration.
        wait = 0.0
        if outstanding >= self._parallel:
            wait = (waiting + 1) * scheduler.job_seconds() / self._parallel
        return EngineStats(
            queue_depth=waiting,
            running=min(outstanding, self._parallel),
            capacity=self._parallel,
            tokens_per_second=s.tokens_per_second,
            prompt_tokens_per_second=s.prompt_tokens_per_second,
            completion_tokens_per_second=s.completion_tokens_per_second,
            estimated_queue_wait_s=wait,
            prompt_tokens_evaluated=s.prompt_tokens_evaluated,
            prompt_tokens_cached=s.prompt_tokens_cached,
            requests_total=self._requests,
            # Idle and nothing measured yet: a default-sized job's prior, so that a gateway in
            # front of this worker spills from the first burst (it counts the load itself).
            job_seconds=scheduler.job_seconds()
            or scheduler.typical_job_seconds(self._spec.max_tokens_default, TYPICAL_PROMPT),
        )

    # --- admission -------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        scheduler, renderer, model = self._scheduler, self._renderer, self._model
        if scheduler is None or renderer is None or model is None:
            raise EngineUnavailable(f"model {self._spec.name!r} is not loaded")
        if request.n > self._parallel:
            raise InvalidRequest(
                f"n is {request.n}, but model {self._spec.name!r} generates at most "
                f"{self._parallel} sequences at once; ask for fewer choices.",
                param="n",
            )
        n_ctx = self._spec.context
        # Cheap checks first: a prompt that cannot fit is refused before templating.
        renderer.check_fits(request, n_ctx, request.max_tokens or 1)
        if scheduler.is_full(self._spec.queue_size):
            raise self._overloaded()

        def prepare() -> tuple[list[int], list[SamplerChain]]:
            tokens = renderer.tokens(request, n_ctx, request.max_tokens or 1)
            grammar = tool_grammar(request) or grammar_for(request.response_format)
            triggers = tool_triggers(request)
            samplers: list[SamplerChain] = []
            try:
                for choice in range(request.n):
                    sampling = _choice_request(request, choice)
                    samplers.append(SamplerChain(model.vocab, sampling, grammar, triggers))
            except BaseException:
                _close((tokens, samplers))
                raise
            return tokens, samplers

        tokens, samplers = await self._off_loop(prepare, _close)
        try:
            room = n_ctx - len(tokens)
            max_tokens = request.max_tokens or min(self._spec.max_tokens_default, max(room, 0))
            if room <= 0 or max_tokens > room:
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {n_ctx} tokens. However, you "
                    f"requested {len(tokens) + max_tokens} tokens ({len(tokens)} in the "
                    f"prompt, {max_tokens} in the completion). Please reduce the length of "
                    "the prompt or of max_tokens.",
                    param="messages" if request.messages is not None else "prompt",
                )
            # The choices share one queue; those after the first wait for its prompt's cells.
            events: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
            jobs: list[BatchJob] = []
            for choice, sampler in enumerate(samplers):
                after = jobs[0] if jobs else None
                jobs.append(
                    BatchJob(
                        request, tokens, max_tokens, sampler, events, choice=choice, after=after
                    )
                )
            if not scheduler.submit(jobs, self._spec.queue_size):  # atomic: checked again
                raise self._overloaded()
        except BaseException:
            _close((tokens, samplers))
            raise
        self._requests += 1
        return JobsStream(jobs, tools=wants_tools(request))

    async def count_tokens(self, request: GenerationRequest) -> list[int]:
        """The tokens of ``request``'s prompt exactly as :meth:`generate` would evaluate them
        (the model's chat template, tools described as for generation, its tokenizer)."""
        renderer = self._renderer
        if renderer is None:
            raise EngineUnavailable(f"model {self._spec.name!r} is not loaded")
        n_ctx = self._spec.context
        renderer.check_fits(request, n_ctx, 0)
        return await self._off_loop(lambda: renderer.tokens(request, n_ctx, 0))

    async def _off_loop(
        self, prepare: Callable[[], _T], abandon: Callable[[_T], None] | None = None
    ) -> _T:
        """Template, tokenize and compile the grammar on a worker thread, within a time bound.

        These are CPU work of up to seconds for long prompts (llama.cpp's special-token
        splitting is quadratic in the prompt's length); on the event loop they would stall
        every other request and ``/health``. A request that gives up (timeout, or its client
        left) leaves the thread to finish; ``abandon`` then frees what it built.
        """
        future = asyncio.get_running_loop().run_in_executor(self._preparer, prepare)
        try:
            return await asyncio.wait_for(asyncio.shield(future), PREPARE_TIMEOUT_S)
        except BaseException as exc:
            if abandon is not None:
                future.add_done_callback(lambda done: _abandoned(done, abandon))
            if isinstance(exc, TimeoutError):
                raise EngineOverloaded(
                    f"model {self._spec.name!r} took over {PREPARE_TIMEOUT_S:.0f}s to prepare "
                    "the prompt; retry later or send a shorter one",
                    retry_after=1,
                ) from exc
            raise

    def _overloaded(self) -> EngineOverloaded:
        stats = self.stats()
        return EngineOverloaded(
            f"model {self._spec.name!r} has {stats.queue_depth} requests waiting; retry later",
            retry_after=round(stats.estimated_queue_wait_s) + 1,
        )


def _choice_request(request: GenerationRequest, choice: int) -> GenerationRequest:
    """The request as choice ``choice`` samples it: a seeded request's choices get seeds of
    their own (seed, seed + 1, ...), so they differ and each still repeats."""
    seed = request.sampling.seed
    if choice == 0 or seed is None:
        return request
    sampling = dataclasses.replace(request.sampling, seed=seed + choice)
    return dataclasses.replace(request, sampling=sampling)


def _close(prepared: tuple[list[int], list[SamplerChain]]) -> None:
    for sampler in prepared[1]:
        sampler.close()


def _abandoned(future: asyncio.Future[_T], abandon: Callable[[_T], None]) -> None:
    if not future.cancelled() and future.exception() is None:
        abandon(future.result())
