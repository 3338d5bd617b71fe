"""Clocks for limits and budgets: the system's, and a fake one that tests move by hand.

Limits need wall-clock time (not a monotonic one) because budgets follow the calendar (a UTC
day or month) and because several gateway replicas sharing Redis must agree on "now"; keep
their clocks synchronised (NTP): a skew of ``s`` seconds shifts a replica's refills by ``s``.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that stands still until :meth:`advance` moves it: tests of limits never sleep."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, epoch_seconds: float) -> None:
        self._now = epoch_seconds
