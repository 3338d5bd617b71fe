"""A measured prior for the batched engine's job duration, so spill works from the first burst.

Local-first routing spills when a request would wait too long for a slot, and the wait is
estimated from how long a job holds a slot. That is measured from jobs that ended; right after
start none has, and the first burst would all queue locally. So the decode thread, before it
serves, times a few small ``llama_decode`` calls on this machine, with this model and these
threads: decode steps of ``parallel`` sequences one token each, sampled (a step with every slot
busy) and one prompt chunk (the cost of a prompt token). A job's prior is then its token budget in
decode steps plus the prompts prefilled meanwhile (see :meth:`StepCosts.job_seconds`); the
measured average replaces it as soon as a job ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import llama_cpp

from cloudlet.domain import GenerationRequest, ModelId
from cloudlet.engines.llamacpp_sampling import SamplerChain

_PROMPT_CHUNK = 32  # tokens in the timed prompt chunk: enough to time, cheap on big models
_STEPS = 3  # timed decode steps


@dataclass(frozen=True, slots=True)
class StepCosts:
    step_s: float  # one decode step with every slot generating
    prompt_token_s: float  # one prompt token prefilled

    def job_seconds(self, max_tokens: float, prompt_tokens: float, parallel: int) -> float:
        """A job of ``max_tokens`` decode steps; every step also carries, on average, the
        prefill of the prompts of the ``parallel`` jobs sharing the batch with it."""
        return max_tokens * self.step_s + parallel * prompt_tokens * self.prompt_token_s


def measure(ctx: Any, batch: Any, vocab: Any, parallel: int, n_batch: int) -> StepCosts:
    """Time a prompt chunk and a few decode steps of every slot, sampling included (a step's
    sampling costs as much as its decode on a small model), after one untimed step that pages
    the weights in. The sequences used are emptied again: the slots start as empty as before.
    """
    token = max(0, llama_cpp.llama_vocab_bos(vocab))
    memory = llama_cpp.llama_get_memory(ctx)
    chunk = max(1, min(_PROMPT_CHUNK, n_batch))
    width = min(parallel, n_batch)
    sampler = SamplerChain(vocab, GenerationRequest(model=ModelId("warm-up"), prompt=""), None)

    def decode(sequences: int, positions: range) -> None:
        n = 0
        for seq in range(sequences):
            for pos in positions:
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = pos == positions[-1]
                n += 1
        batch.n_tokens = n
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed during the warm-up")

    def clear(sequences: int) -> None:
        for seq in range(sequences):
            llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)

    try:
        decode(width, range(1))  # untimed: weights paged in, compute buffers allocated
        clear(width)
        started = time.perf_counter()
        decode(1, range(chunk))
        prompt_s = time.perf_counter() - started
        clear(1)
        started = time.perf_counter()
        for pos in range(_STEPS):
            decode(width, range(pos, pos + 1))
            for row in range(width):
                sampler.sample(ctx, row)
        step_s = (time.perf_counter() - started) / _STEPS * parallel / width
    finally:
        clear(width)
        sampler.close()
    return StepCosts(step_s=step_s, prompt_token_s=prompt_s / chunk)
