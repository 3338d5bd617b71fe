"""A measured prior for the batched engine's job duration, so spill works from the first burst.

Local-first routing spills when a request would wait too long for a slot, and the wait is
estimated from how long a job holds a slot. That is measured from jobs that ended; right after
start none has, and the first burst would all queue locally. So the decode thread, before it
serves, times two small ``llama_decode`` calls on this machine, with this model and these
threads: one step of ``parallel`` sequences one token each (a decode step with every slot busy)
and one prompt chunk (the cost of a prompt token). A job's prior is then its token budget in
decode steps plus the prompts prefilled meanwhile (see :meth:`StepCosts.job_seconds`); the
measured average replaces it as soon as a job ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import llama_cpp

_PROMPT_CHUNK = 32  # tokens in the timed prompt chunk: enough to time, cheap on big models


@dataclass(frozen=True, slots=True)
class StepCosts:
    step_s: float  # one decode step with every slot generating
    prompt_token_s: float  # one prompt token prefilled

    def job_seconds(self, max_tokens: float, prompt_tokens: float, parallel: int) -> float:
        """A job of ``max_tokens`` decode steps; every step also carries, on average, the
        prefill of the prompts of the ``parallel`` jobs sharing the batch with it."""
        return max_tokens * self.step_s + parallel * prompt_tokens * self.prompt_token_s


def measure(ctx: Any, batch: Any, vocab: Any, parallel: int, n_batch: int) -> StepCosts:
    """Time the two steps (after one untimed step that pages the weights in); the sequences
    used are emptied again, so the slots start as empty as before."""
    token = max(0, llama_cpp.llama_vocab_bos(vocab))
    memory = llama_cpp.llama_get_memory(ctx)
    chunk = max(1, min(_PROMPT_CHUNK, n_batch))

    def decode(sequences: int, tokens_each: int) -> float:
        n = 0
        for seq in range(sequences):
            for pos in range(tokens_each):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = pos == tokens_each - 1
                n += 1
        batch.n_tokens = n
        started = time.perf_counter()
        try:
            if llama_cpp.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed during the warm-up")
            return time.perf_counter() - started
        finally:
            for seq in range(sequences):
                llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)

    width = min(parallel, n_batch)
    decode(width, 1)  # untimed: weights paged in, compute buffers allocated
    step_s = decode(width, 1) * parallel / width
    prompt_s = decode(1, chunk)
    return StepCosts(step_s=step_s, prompt_token_s=prompt_s / chunk)
