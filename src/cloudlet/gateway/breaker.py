"""A circuit breaker per upstream replica, on an injectable clock.

Closed, it lets everything through and counts consecutive failures; ``failures`` of them in a
row open it. Open, it refuses (the router skips the replica at once instead of waiting on a
dead upstream) until ``cooldown_s`` has passed; then it is half-open and lets exactly one trial
request through: success closes it, failure opens it for another cooldown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float]) -> None:
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False

    @classmethod
    def never_open(cls) -> CircuitBreaker:
        """A breaker that lets everything through (for engines whose health is known
        otherwise)."""
        return cls(0, 0.0, lambda: 0.0)

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._cooldown_s:
            return "half-open"
        return "open"

    def available(self) -> bool:
        """Would a request be let through now? (Does not take the half-open trial.)"""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._trial_out)

    def acquire(self) -> bool:
        """Let one request through, taking the half-open trial when that is the state."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_out = False

    def failure(self) -> None:
        self._trial_out = False
        if self._opened_at is not None:  # a failed trial (or a late failure): open again
            self._opened_at = self._clock()
            return
        self._failures += 1
        if self._threshold > 0 and self._failures >= self._threshold:
            self._opened_at = self._clock()

    def release(self) -> None:
        """The request neither succeeded nor failed (cancelled, or refused for load)."""
        self._trial_out = False
