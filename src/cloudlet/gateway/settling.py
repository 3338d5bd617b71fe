"""Settles that could not reach the counters are retried, never dropped.

A request's reservation (a key budget's or a route's cloud budget's) holds money until it is
settled. When the store is unreachable at that moment (Redis restarting, a network blip), the
answer has already gone to the client: the settle is not turned into an error, it is retried
in the background with capped exponential backoff until the store answers (for up to nine
minutes: the stores count a repeated settle once for ten), so the hold is released and the
real cost counted as soon as it is back. Reservations are refused meanwhile
(the store is down for them too), so nothing is spent against the stale hold. A process that
stops before the store returns logs what it could not settle; those holds end with their period
(erring on refusing, never on overspending).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Attempt = Callable[[], Awaitable[None]]


class SettleRetries:
    """Runs settles; the ones that fail are retried in background tasks owned here."""

    def __init__(
        self,
        *,
        first_s: float = 0.2,
        max_s: float = 5.0,
        give_up_s: float = 540.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._first = first_s
        self._max = max_s
        self._give_up = give_up_s
        self._sleep = sleep
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Settles still waiting for their store."""
        return len(self._tasks)

    async def run(self, what: str, attempt: Attempt) -> None:
        """Settle now; if the store fails, go on retrying in the background and return."""
        try:
            await attempt()
        except Exception as exc:
            log.warning(
                "could not settle %s (%s: %s); retrying in the background",
                what,
                type(exc).__name__,
                exc,
            )
            task = asyncio.get_running_loop().create_task(self._retry(what, attempt))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _retry(self, what: str, attempt: Attempt) -> None:
        delay, waited = self._first, 0.0
        while waited < self._give_up:
            await self._sleep(delay)
            waited += delay
            try:
                await attempt()
            except Exception:
                delay = min(self._max, delay * 2)
                continue
            log.info("settled %s after the store came back", what)
            return
        log.error(
            "gave up settling %s after %.0f s; its hold stays until the budget period ends",
            what,
            waited,
        )

    async def close(self, grace_s: float = 2.0) -> None:
        """Give pending settles ``grace_s`` seconds more, then stop and log what is lost."""
        if not self._tasks:
            return
        tasks = list(self._tasks)
        _, left = await asyncio.wait(tasks, timeout=grace_s)
        for task in left:
            task.cancel()
        for task in left:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if left:
            log.error(
                "%d settles could not reach their store before shutdown; their holds stay "
                "until the budget period ends",
                len(left),
            )
