"""Slots: the sequences of the batched engine's context, and the prompts their KV cells hold.

Slot ``i`` is llama.cpp sequence ``i`` with its own KV stream of ``context`` cells, and
remembers which tokens its cells hold. A slot keeps its cells after its request ends: they are
the prompt cache. A new prompt goes to the free slot holding the longest prefix of it (else to
the least recently used one), which keeps the matching part and drops the rest
(``llama_memory_seq_rm``), or takes a longer prefix from elsewhere: a copy of another slot's
stream (``llama_memory_seq_cp``; that slot may still be generating, e.g. behind the same system
prompt), or a state saved in host memory (:mod:`~cloudlet.engines.llamacpp_prompt_cache`),
where what slots drop is kept. The choices of a request for ``n`` take a whole copy of their
first choice's cells once its prompt is in (:meth:`Slots.fork`).

Used on the decode thread only, except :class:`BatchJob`'s events and cancellation flag.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import llama_cpp

from cloudlet.domain import GenerationEvent, GenerationRequest, TokenLogprob
from cloudlet.engines.llamacpp_prompt_cache import SAVE_MIN_TOKENS, PromptCache, common_prefix
from cloudlet.engines.llamacpp_sampling import SamplerChain
from cloudlet.engines.textstream import StopScanner, TextAssembler

# Copying a KV stream is a memcpy of the whole stream: ~3 ms for 2048 cells of SmolLM2 on two
# cores, where prefilling costs ~2 ms a token. Below this many more reusable tokens than the
# target slot holds itself, recomputing them is about as cheap.
COPY_MIN_TOKENS = 8
Event = GenerationEvent | BaseException


@dataclass(eq=False)
class BatchJob:
    """One admitted sequence, as the decode thread sees it: a request, or one of the ``n``
    choices of a request, which share one event queue (events tagged with ``choice``).

    A choice after the first names the first as ``after``: it waits for a slot until that
    one's prompt is in the KV cache (``prompt_done``), then copies it from there instead of
    evaluating the same prompt again (see :meth:`Slots.fork`).
    """

    request: GenerationRequest
    tokens: list[int]
    max_tokens: int
    sampler: SamplerChain
    events: asyncio.Queue[tuple[int, Event]] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    choice: int = 0
    after: BatchJob | None = None
    prompt_done: bool = False  # its prompt is evaluated (or it ended): followers may go
    submitted: float = field(default_factory=time.monotonic)  # when it joined the queue

    def ready(self) -> bool:
        """Whether it may take a slot now (a follower waits for its first choice's prompt)."""
        return self.after is None or self.after.prompt_done


@dataclass(eq=False)
class Run:
    """A job placed in a slot: its progress through the prompt and the output."""

    job: BatchJob
    slot: Slot
    order: int  # admission order: prompts are prefilled first come, first served
    reused: int  # prompt tokens whose KV came from a cache
    started: float = field(default_factory=time.monotonic)
    text: TextAssembler = field(default_factory=TextAssembler)
    stops: StopScanner = field(init=False)
    count: int = 0
    next_token: int | None = None  # sampled, to be decoded in the next step
    chunk: int = 0  # prompt tokens in the current step's batch
    row: int = -1  # batch row with this sequence's logits in the current step
    logprobs: list[TokenLogprob] = field(default_factory=list)  # of tokens not yet sent

    def take_logprobs(self) -> tuple[TokenLogprob, ...]:
        taken, self.logprobs = tuple(self.logprobs), []
        return taken

    def __post_init__(self) -> None:
        self.stops = StopScanner(self.job.request.stop)

    @property
    def prefilling(self) -> bool:
        return len(self.slot.cached) < len(self.job.tokens) and self.next_token is None


@dataclass(eq=False)
class Slot:
    seq_id: int
    cached: list[int] = field(default_factory=list)  # tokens at positions 0.. of seq_id's cells
    run: Run | None = None
    last_used: int = 0


class Slots:
    """The context's sequences and where a new prompt's prefix is found."""

    def __init__(self, ctx: Any, parallel: int, prompt_cache_bytes: int) -> None:
        self.all = [Slot(i) for i in range(parallel)]
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._cache = PromptCache(ctx, prompt_cache_bytes)
        self._copy_sources: set[int] = set()  # sequences whose stream is copied at next decode
        self._ticks = itertools.count(1)

    def busy(self) -> bool:
        return any(slot.run is not None for slot in self.all)

    def any_free(self) -> bool:
        return any(slot.run is None for slot in self.all)

    def runs(self) -> list[Run]:
        """The running jobs, in admission order."""
        return sorted((s.run for s in self.all if s.run is not None), key=lambda r: r.order)

    def decoded(self) -> None:
        """After a ``llama_decode``: llama.cpp applied the pending stream copies first."""
        self._copy_sources.clear()

    def release(self, slot: Slot) -> None:
        """The slot's job ended; its cells stay, as cache."""
        slot.run = None
        slot.last_used = next(self._ticks)

    def drop_cells(self, slot: Slot) -> None:
        llama_cpp.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
        slot.cached = []

    def place(self, job: BatchJob) -> Run:
        """Put ``job`` in a free slot, reusing the longest cached prefix of its prompt.

        The prefix comes from the slot itself, from another slot (a copy of its stream) or from
        the host-memory cache (a saved state), whichever holds most of it; what the slot drops
        is saved to that cache first.
        """
        prompt = job.tokens
        limit = len(prompt) - 1  # the last prompt token is always evaluated: its logits start
        best: Slot | None = None
        best_n = 0
        for slot in self.all:
            n = common_prefix(slot.cached, prompt, limit)
            if n > best_n or (n == best_n and best is not None and best.run and not slot.run):
                best, best_n = slot, n
        # The free slot sharing most with the prompt (as llama-server picks), else the least
        # recently used one, empty first.
        free = [s for s in self.all if s.run is None]
        if best is not None and best.run is None:
            target = best
        else:
            target = min(free, key=lambda s: (bool(s.cached), s.last_used))
        own = common_prefix(target.cached, prompt, limit)
        saved, saved_n = self._cache.best(prompt, limit)
        if len(target.cached) - own >= SAVE_MIN_TOKENS:
            self._cache.save(target.seq_id, target.cached)
        reuse = own
        if (
            saved is not None
            and saved_n - max(own, best_n) >= COPY_MIN_TOKENS
            and target.seq_id not in self._copy_sources  # its stream is read at the next decode
        ):
            restored = self._cache.restore(saved, target.seq_id)
            target.cached = list(saved.tokens) if restored else []
            reuse = saved_n if restored else 0
        elif best is not None and best is not target and best_n - own >= COPY_MIN_TOKENS:
            # Another slot, maybe still generating, holds a longer prefix (a shared system
            # prompt): copy its whole KV stream (llama.cpp copies streams only whole, at the
            # next decode) and cut the copy to the shared part.
            llama_cpp.llama_memory_seq_cp(self._mem, best.seq_id, target.seq_id, -1, -1)
            self._copy_sources.add(best.seq_id)
            target.cached = list(best.cached)
            reuse = best_n
        llama_cpp.llama_memory_seq_rm(self._mem, target.seq_id, reuse, -1)
        del target.cached[reuse:]
        target.last_used = next(self._ticks)
        target.run = Run(job, target, order=target.last_used, reused=reuse)
        return target.run

    def fork(self, source: Slot, job: BatchJob) -> Run | None:
        """Put ``job`` in a free slot holding a copy of ``source``'s cells, which hold its
        whole prompt (another choice of the same request, whose prompt was just evaluated);
        None when no slot is free. What the slot held is saved to the host cache first."""
        free = [s for s in self.all if s.run is None and s.seq_id not in self._copy_sources]
        if not free:
            return None
        target = min(free, key=lambda s: (bool(s.cached), s.last_used))
        if len(target.cached) >= SAVE_MIN_TOKENS:
            self._cache.save(target.seq_id, target.cached)
        llama_cpp.llama_memory_seq_cp(self._mem, source.seq_id, target.seq_id, -1, -1)
        self._copy_sources.add(source.seq_id)
        target.cached = list(source.cached)
        target.last_used = next(self._ticks)
        target.run = Run(job, target, order=target.last_used, reused=len(target.cached))
        return target.run
