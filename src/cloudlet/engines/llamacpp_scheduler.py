"""The decode loop of the batched llama.cpp engine: many sequences, one context, one thread.

Each step builds one ``llama_batch``: first the token every generating sequence sampled last
(one each, so running streams advance every step), then prompt tokens of sequences still
prefilling, in admission order, until ``n_batch`` tokens are in (chunked prefill: a long prompt
spreads over several steps instead of stalling the streams). One ``llama_decode`` runs it all;
then each sequence that got logits samples from its own sampler chain.

New requests are admitted between steps (continuous batching) into the free slot whose cells
hold the longest prefix of their prompt (:mod:`~cloudlet.engines.llamacpp_slots`). A sequence's
cells stay when it ends or its client leaves: they are the prompt cache for the next one.

Admission (``submit``) and cancellation (a ``threading.Event`` per job) are the only things the
event loop shares with this thread; events go back with ``call_soon_threadsafe``, one call per
step for all sequences.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import llama_cpp

from cloudlet.domain import Finished, FinishReason, TextDelta, Usage
from cloudlet.engines import llamacpp_warmup
from cloudlet.engines.llamacpp_sampling import TokenPieces, token_logprob
from cloudlet.engines.llamacpp_slots import BatchJob, Event, Run, Slots
from cloudlet.engines.rates import JobTimes, RateMeter, WindowRate
from cloudlet.errors import EngineError, EngineUnavailable

log = logging.getLogger(__name__)

# Coming out of idle, admission waits until no request arrived for BURST_QUIET_S (at most
# BURST_MAX_S): a burst then starts in one decode step.
BURST_QUIET_S = 0.002
BURST_MAX_S = 0.02


@dataclass
class SchedulerStats:
    """Counters the decode thread writes and the event loop reads (plain values: GIL-safe)."""

    outstanding: int = 0  # admitted and not yet finished (running + waiting)
    tokens_per_second: float = 0.0
    prompt_tokens_per_second: float = 0.0  # prefill, smoothed (see engines/rates.py)
    completion_tokens_per_second: float = 0.0  # decode, smoothed
    job_seconds: float = 0.0
    prompt_tokens_evaluated: int = 0
    prompt_tokens_cached: int = 0


class Scheduler:
    """Owns the batch and the slots; drives ``llama_decode`` on its own thread."""

    def __init__(
        self,
        ctx: Any,
        vocab: Any,
        *,
        parallel: int,
        n_batch: int,
        prompt_cache_bytes: int,
        loop: asyncio.AbstractEventLoop,
        name: str,
    ) -> None:
        self.parallel = parallel
        self.stats = SchedulerStats()
        self._ctx = ctx
        self._vocab = vocab
        self._pieces = TokenPieces(vocab)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self._n_batch = n_batch
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._loop = loop
        self._slots = Slots(ctx, parallel, prompt_cache_bytes)
        self._cond = threading.Condition()
        self._incoming: list[BatchJob] = []
        self._stopping = False
        self._waiting: deque[BatchJob] = deque()  # decode thread only
        self._outbox: list[tuple[BatchJob, Event]] = []
        self._rates = RateMeter()
        self._window = WindowRate()  # tokens/s over the decode steps of the last 10 s
        self._times = JobTimes(parallel)  # under _cond
        self._costs: llamacpp_warmup.StepCosts | None = None  # measured by the warm-up
        self._warmed = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"decode-{name}", daemon=True)

    # --- the event loop's side ------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    async def warmed(self) -> None:
        """Wait (off the event loop) until the warm-up has run: then estimates hold from the
        first request on."""
        await asyncio.to_thread(self._warmed.wait)

    @property
    def costs(self) -> llamacpp_warmup.StepCosts | None:
        """The warm-up's measured step costs (None before it ran, or if it failed)."""
        return self._costs

    def job_seconds(self) -> float:
        """Typical time a job holds a slot: the recent average of jobs that ended; before the
        first one ends, the warm-up's prior for the jobs in hand (their token budgets), or the
        oldest running job's age when that is longer already."""
        if self.stats.job_seconds:
            return self.stats.job_seconds
        now = time.monotonic()
        ages = [now - run.started for slot in self._slots.all if (run := slot.run) is not None]
        return max(self.prior_job_seconds(), max(ages, default=0.0))

    def prior_job_seconds(self) -> float:
        """What the warm-up predicts for the outstanding jobs (0 before it ran, or when idle)."""
        with self._cond:
            return self._times.prior()

    def typical_job_seconds(self, max_tokens: int, prompt_tokens: int) -> float:
        """The warm-up's prior for one job of that size, for an estimate needed before any
        job is in hand (the gateway in front of a worker process counts the jobs itself and
        must know a job's duration before the first burst reaches the worker)."""
        return self._times.typical(max_tokens, prompt_tokens)

    def is_full(self, queue_size: int) -> bool:
        """Whether every slot is taken and ``queue_size`` jobs already wait for one."""
        return self.stats.outstanding >= self.parallel + queue_size

    def submit(self, jobs: list[BatchJob], queue_size: int) -> bool:
        """Queue ``jobs`` (a request's choices), all or none: none when they would take the
        queue past full (see :meth:`is_full`)."""
        with self._cond:
            extra = len(jobs) - 1
            if self.stats.outstanding + extra >= self.parallel + queue_size or self._stopping:
                return False
            for job in jobs:
                self.stats.outstanding += 1
                self._times.admitted(job.max_tokens, len(job.tokens))
                self._incoming.append(job)
            self._cond.notify()
        return True

    def stop(self) -> None:
        """Ask the thread to end; it fails what is left and frees the batch. Then ``join``."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def join(self) -> None:
        self._thread.join()

    # --- the decode thread ----------------------------------------------------------------

    def _warm_up(self) -> None:
        """Measure the step costs the job prior needs (see :mod:`llamacpp_warmup`)."""
        try:
            self._costs = llamacpp_warmup.measure(
                self._ctx, self._batch, self._vocab, self.parallel, self._n_batch
            )
            with self._cond:
                self._times.costs = self._costs
        except Exception:  # no prior: the estimate waits for the first measured job
            log.warning("warm-up failed; queue waits are estimated once a job ends", exc_info=True)
        finally:
            self._warmed.set()
        log.debug("warm-up: %s", self._costs)

    def _main(self) -> None:
        try:
            self._warm_up()
            while self._next_round():
                try:
                    self._step()
                except Exception as exc:  # llama.cpp failed: fail this batch, keep serving
                    log.exception("decode step failed")
                    for run in self._slots.runs():
                        self._slots.drop_cells(run.slot)
                        self._end(run, EngineError(f"generation failed: {exc}"))
                self._flush()
        finally:
            gone = EngineUnavailable("the server is shutting down")
            for run in self._slots.runs():
                self._end(run, gone)
            with self._cond:
                self._waiting.extend(self._incoming)
                self._incoming.clear()
            while self._waiting:
                self._release(self._waiting.popleft(), gone)
            self._flush()
            llama_cpp.llama_batch_free(self._batch)

    def _next_round(self) -> bool:
        """Wait for work, take new jobs, drop cancelled ones, fill free slots."""
        with self._cond:
            while not (self._stopping or self._incoming or self._waiting or self._slots.busy()):
                self._cond.wait()
            if self._stopping:
                return False
            if not (self._slots.busy() or self._waiting):
                self._gather_burst()
            self._waiting.extend(self._incoming)
            self._incoming.clear()
        for run in self._slots.runs():
            if run.job.cancelled.is_set():
                self._finish(run, "cancelled")
        if any(job.cancelled.is_set() for job in self._waiting):
            for job in [j for j in self._waiting if j.cancelled.is_set()]:
                self._waiting.remove(job)
                self._release(job, None)
        while self._waiting and self._slots.any_free():
            # First come, first served; a choice waiting for its first choice's prompt lets
            # the jobs behind it pass (it goes one step later, copying that prompt's cells).
            ready = next((j for j in self._waiting if j.ready()), None)
            if ready is None:
                break
            self._waiting.remove(ready)
            run = self._slots.place(ready)
            self.stats.prompt_tokens_cached += run.reused
            self.stats.prompt_tokens_evaluated += len(run.job.tokens) - run.reused
        return True

    def _gather_burst(self) -> None:
        """Coming out of idle, wait (briefly) until requests stop arriving.

        Requests of a burst reach the engine a millisecond or so apart (each crosses the
        HTTP stack on the event loop first); once llama.cpp's threads run they take every
        core and the rest trickle in many milliseconds later, a whole decode step behind.
        Caller holds ``_cond``.
        """
        deadline = time.monotonic() + BURST_MAX_S
        seen = len(self._incoming)
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            self._cond.wait(min(BURST_QUIET_S, left))
            if len(self._incoming) == seen:
                return
            seen = len(self._incoming)

    def _step(self) -> None:
        runs = self._slots.runs()
        if not runs:
            return
        batch, n = self._batch, 0

        def add(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq_id
            batch.logits[n] = logits
            n += 1

        # Sorted by sequence id: llama.cpp puts consecutive ids of per-sequence KV streams into
        # one micro-batch, so this order decodes them all in one graph evaluation.
        decoding = sorted(
            (r for r in runs if r.next_token is not None), key=lambda r: r.slot.seq_id
        )
        for run in decoding:
            run.row = n
            add(run.next_token or 0, len(run.slot.cached), run.slot.seq_id, True)
        prefilling: list[Run] = []
        for run in runs:
            room = self._n_batch - n
            if room <= 0:
                break
            if not run.prefilling:
                continue
            start = len(run.slot.cached)
            chunk = run.job.tokens[start : start + room]
            last = len(run.job.tokens) - 1
            for i, token in enumerate(chunk, start):
                add(token, i, run.slot.seq_id, i == last)
            run.chunk = len(chunk)
            run.row = n - 1 if start + len(chunk) > last else -1
            prefilling.append(run)
        batch.n_tokens = n
        started = time.monotonic()
        try:
            rc = llama_cpp.llama_decode(self._ctx, batch)
        finally:
            self._slots.decoded()
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        for run in decoding:
            run.slot.cached.append(run.next_token or 0)
            run.next_token = None
        for run in prefilling:
            start = len(run.slot.cached)
            run.slot.cached.extend(run.job.tokens[start : start + run.chunk])
        seconds = time.monotonic() - started
        self._rates.step(sum(run.chunk for run in prefilling), len(decoding), seconds)
        self.stats.prompt_tokens_per_second = self._rates.prompt_tokens_per_second
        self.stats.completion_tokens_per_second = self._rates.completion_tokens_per_second
        sampled = 0
        for run in decoding + prefilling:
            if run.row < 0:
                continue
            if not run.job.prompt_done:  # its prompt is in now: its other choices fork here
                run.job.prompt_done = True
                for fork in self._fork(run):
                    self._sample(fork, run.row)
                    sampled += 1
            self._sample(run, run.row)
            sampled += 1
        now = time.monotonic()  # the step's time, sampling included
        self.stats.tokens_per_second = self._window.step(now, sampled, now - started)

    def _sample(self, run: Run, row: int) -> None:
        """Sample ``run``'s next token from the logits of batch row ``row``."""
        token = run.job.sampler.sample(self._ctx, row)
        request = run.job.request
        if request.logprobs and not llama_cpp.llama_vocab_is_eog(self._vocab, token):
            run.logprobs.append(
                token_logprob(
                    self._ctx, row, token, request.top_logprobs, self._n_vocab, self._pieces
                )
            )
        self._accept(run, token)

    def _fork(self, first: Run) -> list[Run]:
        """The waiting choices after ``first``, whose prompt was just evaluated, in free slots
        with a copy of its cells: they sample their first token from its logits, so the
        prompt is evaluated once for all. Those that find no free slot wait and are placed
        later like any job (copying what they can of the prompt from a cache)."""
        forks: list[Run] = []
        for job in [j for j in self._waiting if j.after is first.job]:
            run = self._slots.fork(first.slot, job)
            if run is None:
                break
            self._waiting.remove(job)
            job.prompt_done = True
            self.stats.prompt_tokens_cached += run.reused
            forks.append(run)
        return forks

    def _accept(self, run: Run, token: int) -> None:
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._finish(run, "stop")
            return
        run.count += 1
        piece, stopped = run.stops.feed(run.text.feed(self._pieces(token)))
        if piece:
            self._outbox.append((run.job, TextDelta(piece, run.take_logprobs(), run.job.choice)))
        if stopped:
            self._finish(run, "stop", stop_sequence=run.stops.hit)
        elif run.count >= run.job.max_tokens:
            self._finish(run, "length")
        else:
            run.next_token = token

    def _finish(self, run: Run, reason: FinishReason, *, stop_sequence: str | None = None) -> None:
        if stop_sequence is None:
            tail = run.stops.feed(run.text.flush())[0] + run.stops.flush()
            logprobs = run.take_logprobs()
            if tail or logprobs:
                self._outbox.append((run.job, TextDelta(tail, logprobs, run.job.choice)))
        usage = Usage(prompt_tokens=len(run.job.tokens), completion_tokens=run.count)
        queued = max(0.0, run.started - run.job.submitted)  # waited for a slot
        self._end(run, Finished(reason, usage, stop_sequence=stop_sequence, queued_s=queued))

    def _end(self, run: Run, last: Event) -> None:
        """Free the slot (its cells stay, as cache) and send the stream's last event."""
        self._slots.release(run.slot)
        elapsed = time.monotonic() - run.started
        with self._cond:
            self.stats.job_seconds = self._times.ended(elapsed)
        self._release(run.job, last)

    def _release(self, job: BatchJob, last: Event | None) -> None:
        job.prompt_done = True  # ended: whoever waited for its prompt goes without it
        job.sampler.close()
        if last is not None:
            self._outbox.append((job, last))
        with self._cond:
            self.stats.outstanding -= 1
            self._times.released(job.max_tokens, len(job.tokens))

    def _flush(self) -> None:
        if not self._outbox:
            return
        outbox, self._outbox = self._outbox, []
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
            self._loop.call_soon_threadsafe(_deliver, outbox)


def _deliver(items: list[tuple[BatchJob, Event]]) -> None:
    for job, event in items:
        job.events.put_nowait((job.choice, event))
