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
