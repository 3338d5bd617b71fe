"""Run one request along a route: plan the targets, gate the cloud on its budget, fail over.

The plan is the policy's ranking; under ``local-first`` the local targets whose estimated queue
wait is within ``spill.max_queue_wait_ms`` come first, then the remote ones, then the busy or
down local ones as a last resort. Before a cloud target is tried its worst-case cost is
reserved against the route's budget; when that fails the budget is spent, and the request
either waits in a local queue (``when_spent: queue``) or gets a 429 (``reject``).

Errors raised before the first token (an engine's admission errors) fail over to the next
replica or target, with backoff and full jitter, at most ``retry.max_attempts`` times; the
client sees nothing of it. Each replica's circuit breaker counts the failures that say the
upstream is unwell (unreachable, 5xx, timeouts, malformed replies), not load (429, a full
queue) nor the client's own errors, which are returned at once.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

from cloudlet.config.remote import RouteSpec
from cloudlet.domain import GenerationRequest
from cloudlet.errors import (
    CloudletError,
    EngineOverloaded,
    EngineUnavailable,
    UpstreamError,
    UpstreamRateLimited,
)
from cloudlet.gateway.budget import CloudBudget, Hold, hold
from cloudlet.gateway.policies import rank
from cloudlet.gateway.pricing import Money
from cloudlet.gateway.targets import Replica, Target

T = TypeVar("T")
Attempt = Callable[[Target, Replica, Hold | None], Awaitable[T]]
_FAILOVER = (EngineOverloaded, EngineUnavailable, UpstreamError)


@dataclass(frozen=True, slots=True)
class RoutingEnv:
    """The clock, sleep and randomness routing uses; tests inject fakes."""

    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    rng: random.Random


@dataclass(frozen=True, slots=True)
class Routed(Generic[T]):
    """What ran where: ``value`` from ``target`` (a model name); ``spilled`` when that is not
    the policy's first choice."""

    value: T
    target: str
    spilled: bool


def counts_against_breaker(exc: CloudletError) -> bool:
    return isinstance(exc, EngineUnavailable | UpstreamError) and not isinstance(
        exc, UpstreamRateLimited
    )


class RouteRunner:
    def __init__(
        self,
        spec: RouteSpec,
        targets: Sequence[Target],
        budget: CloudBudget | None,
        env: RoutingEnv,
        budgets_of: Mapping[str, Sequence[CloudBudget]] | None = None,
    ) -> None:
        """``budget`` is this route's own; ``budgets_of`` maps each cloud target to every
        budget that covers it (this route's and other routes'), all charged for a call."""
        self.spec = spec
        self.targets = list(targets)
        self.budget = budget
        self._env = env
        if budgets_of is None:
            budgets_of = {t.name: [budget] for t in self.targets if budget is not None}
        self._budgets_of = budgets_of
        self._weights = [(t, w.weight) for t, w in zip(self.targets, spec.targets, strict=True)]

    def plan(
        self, price_of: Callable[[Target], Money | None]
    ) -> tuple[list[Target], Target, float | None]:
        """Targets in the order to try, the policy's first choice, and the local queue wait
        (seconds) that made a local-first route spill, if it did."""

        def amount(target: Target) -> Decimal:
            money = price_of(target)
            return money.amount if money is not None else Decimal(0)

        ranked = rank(self.spec.policy, self._weights, amount, self._env.rng)
        if self.spec.policy != "local-first":
            return ranked, ranked[0], None
        limit_s = self.spec.spill.max_queue_wait_ms / 1000
        within: list[Target] = []
        busy: list[Target] = []
        remote: list[Target] = []
        waits: list[float] = []
        for target in ranked:
            if target.cloud:
                remote.append(target)
                continue
            wait = target.queue_wait_s() if target.available() else float("inf")
            (within if wait <= limit_s else busy).append(target)
            waits.append(wait)
        spilled_wait = None if within else min(waits, default=float("inf"))
        first_local = next(t for t in ranked if not t.cloud)  # the spec guarantees one
        return within + remote + busy, first_local, spilled_wait

    async def run(
        self,
        request: GenerationRequest | None,
        attempt: Attempt[T],
        price_of: Callable[[Target], Money | None],
    ) -> Routed[T]:
        order, first, local_wait = self.plan(price_of)
        tries = _Tries()
        # Targets scaled to zero start scaling now; the request waits for one only when no
        # other target could take it (a cloud target takes the overflow meanwhile).
        sleeping = [t for t in order if _asleep(t)]
        for target in sleeping:
            assert target.dynamic is not None
            await target.dynamic.wake(wait=False)
        blocked: CloudBudget | None = None
        for target in order:
            held: Hold | None = None
            covering = self._budgets_of.get(target.name, ()) if target.cloud else ()
            cost = price_of(target) if covering else None
            if cost is not None:
                if not target.available():
                    continue
                taken = await hold(covering, cost)
                if isinstance(taken, CloudBudget):  # this budget is spent
                    blocked = taken
                    if taken.spec.when_spent == "reject":
                        raise taken.exhausted(_finite(local_wait))
                    continue
                held = taken
            try:
                value = await self._try(target, request, attempt, held, tries)
                if value is not None:
                    held = None  # the attempt settles it now
                    return Routed(value[0], target.name, spilled=target is not first)
            finally:
                if held is not None:
                    await held.release()
        for target in sleeping:
            assert target.dynamic is not None
            if tries.count < self.spec.retry.max_attempts and await target.dynamic.wake(wait=True):
                value = await self._try(target, request, attempt, None, tries)
                if value is not None:
                    return Routed(value[0], target.name, spilled=target is not first)
        if tries.last is not None:
            raise tries.last
        if blocked is not None:
            raise blocked.exhausted(_finite(local_wait))
        raise _unavailable(self.spec.name, self.targets, bool(sleeping))

    async def _try(
        self,
        target: Target,
        request: GenerationRequest | None,
        attempt: Attempt[T],
        held: Hold | None,
        tries: _Tries,
    ) -> tuple[T] | None:
        """Try ``target``'s replicas in the balancer's order; the value of the first that
        succeeds (in a 1-tuple), or None with the failures recorded in ``tries``."""
        for replica in target.replica_order(request) if target.loaded else []:
            if tries.count >= self.spec.retry.max_attempts:
                break
            if not replica.breaker.acquire():
                continue
            if tries.count:
                await self._env.sleep(self._backoff(tries.count))
            tries.count += 1
            try:
                value = await attempt(target, replica, held)
            except CloudletError as exc:
                if not isinstance(exc, _FAILOVER):
                    replica.breaker.release()
                    raise
                if counts_against_breaker(exc):
                    replica.breaker.failure()
                else:
                    replica.breaker.release()
                tries.last = exc
                continue
            except BaseException:
                replica.breaker.release()
                raise
            replica.breaker.success()
            return (value,)
        return None

    def _backoff(self, tries: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(tries-1))], in seconds."""
        retry = self.spec.retry
        ceiling = min(retry.max_backoff_ms, retry.backoff_ms * 2 ** (tries - 1))
        return self._env.rng.uniform(0, ceiling) / 1000


@dataclass(slots=True)
class _Tries:
    """Attempts made so far for one request, and the last failure."""

    count: int = 0
    last: CloudletError | None = None


def _asleep(target: Target) -> bool:
    """A loaded dynamic target with no replica at all: scaled to zero."""
    if target.dynamic is None or not target.loaded:
        return False
    target.sync()
    return not target.replicas


def _finite(wait: float | None) -> float | None:
    return wait if wait is not None and wait != float("inf") else None


def _unavailable(name: str, targets: Sequence[Target], waking: bool) -> EngineUnavailable:
    if waking:
        return EngineUnavailable(
            f"model {name!r} is scaling up from zero and no replica became ready in time; "
            "retry shortly",
            retry_after=10,
        )
    if len(targets) == 1 and not targets[0].loaded:
        why = targets[0].load_error
        return EngineUnavailable(
            f"model {name!r} " + (f"failed to load: {why}" if why else "is still loading"),
            retry_after=5 if why is None else 60,
        )
    return EngineUnavailable(
        f"no target of {name!r} can take requests now (down, loading or circuit open)",
        retry_after=5,
    )
