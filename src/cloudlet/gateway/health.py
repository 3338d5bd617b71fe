"""Active health checks: probe every remote replica on an interval, off the request path.

A replica that fails ``unhealthy_after`` checks in a row is taken out of rotation until one
check succeeds, so a dead upstream is skipped before any request has to time out on it (the
circuit breaker covers the failures requests see; this covers the time between requests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from cloudlet.gateway.targets import Probed, Target

log = logging.getLogger(__name__)


class HealthChecker:
    def __init__(
        self, targets: Sequence[Target], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self._targets = [
            t
            for t in targets
            if t.options.health_check.interval_s > 0
            and any(isinstance(r.engine, Probed) for r in t.replicas)
        ]
        self._sleep = sleep
        self._tasks: list[asyncio.Task[None]] = []

    async def check_once(self) -> None:
        """Probe every replica once, concurrently; record the results."""
        await asyncio.gather(*(self._check(t) for t in self._targets if t.loaded))

    async def _check(self, target: Target) -> None:
        spec = target.options.health_check
        for replica in target.replicas:
            if not isinstance(replica.engine, Probed):
                continue
            ok = await replica.engine.probe(spec.timeout_s)
            was = replica.healthy
            replica.checked(ok, spec.unhealthy_after)
            if was != replica.healthy:
                log.warning(
                    "model %s: a replica is %s",
                    target.name,
                    "healthy again" if replica.healthy else "unhealthy",
                )

    def start(self) -> None:
        """One task per checked model, each on its own interval."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._loop(t), name=f"health-{t.name}") for t in self._targets
            ]

    async def _loop(self, target: Target) -> None:
        while True:
            await self._sleep(target.options.health_check.interval_s)
            if not target.loaded:
                continue
            try:
                await self._check(target)
            except Exception:  # a failed round must not end the checks
                log.exception("health check of %s failed", target.name)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
