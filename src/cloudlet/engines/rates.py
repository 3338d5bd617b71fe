"""Prefill and decode rates of a batching engine, smoothed over its recent busy time.

Each decode step of a continuous-batching engine mixes prompt tokens of sequences still
prefilling with one token of each sequence generating; one forward pass evaluates them all,
row by row, so a step's time is split between the two in proportion to their tokens. Each
rate is then the tokens of its kind over the seconds spent on them, both sums decayed by
``exp(-busy seconds / time_constant_s)``: an exponentially weighted average over the last
half-minute or so of busy time, not the instant's (one step of a long prompt alone would
otherwise swing the decode rate by orders of magnitude). Idle time changes nothing.

Pure Python, no llama.cpp: the gateway's pricing depends on these numbers, and tests feed
steps to it directly.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

#: Busy seconds over which older steps fade by 1/e.
TIME_CONSTANT_S = 30.0


class RateMeter:
    def __init__(self, time_constant_s: float = TIME_CONSTANT_S) -> None:
        self._tau = time_constant_s
        self._prompt = [0.0, 0.0]  # tokens, seconds
        self._decode = [0.0, 0.0]

    def step(self, prompt_tokens: int, decode_tokens: int, seconds: float) -> None:
        """One forward pass of ``prompt_tokens`` + ``decode_tokens`` that took ``seconds``."""
        total = prompt_tokens + decode_tokens
        if total <= 0 or seconds <= 0:
            return
        keep = math.exp(-seconds / self._tau)
        per_token = seconds / total
        for sums, tokens in ((self._prompt, prompt_tokens), (self._decode, decode_tokens)):
            sums[0] = sums[0] * keep + tokens
            sums[1] = sums[1] * keep + tokens * per_token

    @property
    def prompt_tokens_per_second(self) -> float:
        """Prompt tokens evaluated per second of prefill (0 before any)."""
        return _rate(self._prompt)

    @property
    def completion_tokens_per_second(self) -> float:
        """Tokens generated per second of decoding, all sequences together (0 before any)."""
        return _rate(self._decode)


def _rate(sums: list[float]) -> float:
    return sums[0] / sums[1] if sums[1] > 0 else 0.0


class WindowRate:
    """Tokens sampled per second of decode steps, over the steps of the last ``window_s``
    seconds (the ``tokens_per_second`` gauge)."""

    def __init__(self, window_s: float = 10.0) -> None:
        self._window_s = window_s
        self._steps: deque[tuple[float, int, float]] = deque()  # (end, tokens, seconds)
        self._tokens = 0
        self._seconds = 0.0

    def step(self, end: float, tokens: int, seconds: float) -> float:
        """Add a step that ended at ``end`` (monotonic); the rate, 0 before any busy time."""
        self._steps.append((end, tokens, seconds))
        self._tokens += tokens
        self._seconds += seconds
        while self._steps and self._steps[0][0] < end - self._window_s:
            _, old_tokens, old_seconds = self._steps.popleft()
            self._tokens -= old_tokens
            self._seconds -= old_seconds
        return self._tokens / self._seconds if self._seconds > 0 else 0.0


class JobTimes:
    """How long a job holds a slot, for queue-wait estimates: the recent average of the jobs
    that ended; before the first ends, the warm-up's prior (:class:`StepCosts`-like ``costs``)
    for the token budgets of the jobs in hand. The caller serialises the calls."""

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self.costs: JobCosts | None = None  # set once the warm-up measured them
        self.average = 0.0  # of the jobs that ended, smoothed; 0 before any
        self._jobs = 0
        self._tokens = 0  # max_tokens of the jobs in hand
        self._prompt = 0  # their prompt tokens

    def admitted(self, max_tokens: int, prompt_tokens: int) -> None:
        self._jobs += 1
        self._tokens += max_tokens
        self._prompt += prompt_tokens

    def released(self, max_tokens: int, prompt_tokens: int) -> None:
        self._jobs -= 1
        self._tokens -= max_tokens
        self._prompt -= prompt_tokens

    def ended(self, seconds: float) -> float:
        """A job held its slot ``seconds``; the new average."""
        self.average = 0.8 * self.average + 0.2 * seconds if self.average else seconds
        return self.average

    def prior(self) -> float:
        """What the warm-up predicts for the jobs in hand (0 before it ran, or when idle)."""
        if self.costs is None or self._jobs <= 0:
            return 0.0
        jobs = self._jobs
        return self.costs.job_seconds(self._tokens / jobs, self._prompt / jobs, self.parallel)

    def typical(self, max_tokens: int, prompt_tokens: int) -> float:
        """The warm-up's prior for one job of that size (0 before it ran)."""
        costs = self.costs
        return costs.job_seconds(max_tokens, prompt_tokens, self.parallel) if costs else 0.0


class JobCosts(Protocol):
    def job_seconds(self, max_tokens: float, prompt_tokens: float, parallel: int) -> float: ...
