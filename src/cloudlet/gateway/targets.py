"""Targets: the served models a route can send a request to, each with its replicas.

A target wraps one engine. An engine that exposes ``replicas`` (the remote engine, one per
upstream URL) is balanced over them; any other engine is its own single replica. Each replica
has its circuit breaker, its active-health state and its count of requests in flight; each
target keeps an average time to first token for the ``fastest`` policy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from cloudlet.config import ModelSpec
from cloudlet.config.remote import BreakerSpec, HealthCheckSpec, PriceSpec
from cloudlet.domain import GenerationRequest, WorkerState
from cloudlet.engines.base import Engine
from cloudlet.gateway.balancer import PrefixAffinity, least_outstanding, prefix_key
from cloudlet.gateway.breaker import CircuitBreaker

_TTFT_WEIGHT = 0.2  # weight of the newest observation in the moving average


@runtime_checkable
class Replicated(Protocol):
    @property
    def replicas(self) -> Sequence[Engine]: ...


@runtime_checkable
class Probed(Protocol):
    async def probe(self, timeout_s: float) -> bool: ...


@runtime_checkable
class Dynamic(Protocol):
    """An engine whose replicas come and go (engine pods in a cluster)."""

    @property
    def replicas(self) -> Sequence[Engine]: ...

    @property
    def replicas_version(self) -> int:
        """Changes whenever ``replicas`` does."""
        ...

    async def wake(self, *, wait: bool) -> bool:
        """With no replica: ask for one (scale from zero) and, with ``wait``, wait a bounded
        time for it. True when a replica is there."""
        ...


@runtime_checkable
class Supervised(Protocol):
    """An engine whose model runs in a worker process this gateway supervises."""

    def is_up(self) -> bool: ...

    def worker_state(self) -> WorkerState: ...


@dataclass(frozen=True, slots=True)
class TargetOptions:
    """What routing needs from a model's spec; engines given without one get the defaults."""

    cloud: bool = False
    price: PriceSpec | None = None
    max_tokens_default: int = 512
    balance: Literal["least-outstanding", "prefix-affinity"] = "least-outstanding"
    breaker: BreakerSpec = field(default_factory=BreakerSpec)
    health_check: HealthCheckSpec = field(default_factory=HealthCheckSpec)

    @classmethod
    def of(cls, spec: ModelSpec | None) -> TargetOptions:
        if spec is None:
            return cls()
        return cls(
            cloud=spec.cloud,
            price=spec.price,
            max_tokens_default=spec.max_tokens_default,
            balance=spec.balance,
            breaker=spec.breaker,
            health_check=spec.health_check,
        )


class Replica:
    """One engine a target balances over. A supervised engine (a local worker) is available
    exactly while its worker is up: its supervisor knows better than a breaker, which would
    keep a restarted worker out for a cooldown after the failures its crash caused."""

    def __init__(self, engine: Engine, breaker: CircuitBreaker) -> None:
        self.engine = engine
        self.supervised = engine if isinstance(engine, Supervised) else None
        self.breaker = CircuitBreaker.never_open() if self.supervised is not None else breaker
        self.outstanding = 0
        self.healthy = True
        self.failed_checks = 0

    def available(self) -> bool:
        if self.supervised is not None:
            return self.supervised.is_up()
        return self.healthy and self.breaker.available()

    def checked(self, ok: bool, unhealthy_after: int) -> None:
        """Record one active health check."""
        self.failed_checks = 0 if ok else self.failed_checks + 1
        if ok:
            self.healthy = True
        elif self.failed_checks >= unhealthy_after:
            self.healthy = False


class Target:
    def __init__(
        self, name: str, engine: Engine, options: TargetOptions, clock: Callable[[], float]
    ) -> None:
        self.name = name
        self.engine = engine
        self.options = options
        self._clock = clock
        self.dynamic = engine if isinstance(engine, Dynamic) else None
        self._version = -1
        self.replicas: list[Replica] = []
        self._affinity: PrefixAffinity | None = None
        self._set_replicas(list(engine.replicas) if isinstance(engine, Replicated) else [engine])
        self.loaded = False
        self.load_error: str | None = None
        self.ttft_s: float | None = None

    @property
    def cloud(self) -> bool:
        return self.options.cloud

    def _set_replicas(self, engines: Sequence[Engine]) -> None:
        """Wrap ``engines``, keeping the breaker and counts of replicas already known."""
        known = {id(r.engine): r for r in self.replicas}
        b = self.options.breaker
        self.replicas = [
            known.get(id(e)) or Replica(e, CircuitBreaker(b.failures, b.cooldown_s, self._clock))
            for e in engines
        ]
        if self.options.balance == "prefix-affinity":
            keys = [str(getattr(r.engine, "url", f"r{i}")) for i, r in enumerate(self.replicas)]
            self._affinity = PrefixAffinity(keys)

    def sync(self) -> None:
        """Pick up a dynamic engine's current replicas (cheap when nothing changed)."""
        dynamic = self.dynamic
        if dynamic is not None and dynamic.replicas_version != self._version:
            self._version = dynamic.replicas_version
            self._set_replicas(list(dynamic.replicas))

    def available(self) -> bool:
        self.sync()
        return self.loaded and any(r.available() for r in self.replicas)

    def queue_wait_s(self) -> float:
        """The shortest estimated queue wait among the replicas that would take a request."""
        self.sync()
        waits = [r.engine.stats().estimated_queue_wait_s for r in self.replicas if r.available()]
        return min(waits, default=float("inf"))

    def replica_order(self, request: GenerationRequest | None) -> list[Replica]:
        """The available replicas, in the order the balancer prefers for this request."""
        self.sync()
        loads = [r.outstanding for r in self.replicas]
        if self._affinity is not None and request is not None:
            order = self._affinity.order(prefix_key(request), loads)
        else:
            order = least_outstanding(loads)
        return [self.replicas[i] for i in order if self.replicas[i].available()]

    def observe_ttft(self, seconds: float) -> None:
        old = self.ttft_s
        self.ttft_s = seconds if old is None else (1 - _TTFT_WEIGHT) * old + _TTFT_WEIGHT * seconds


def target_state(target: Target) -> str:
    """``loading``, ``failed``, ``restarting`` (a worker is coming back), ``ready`` or
    ``degraded`` (loaded, every replica down)."""
    if not target.loaded:
        return "failed" if target.load_error is not None else "loading"
    target.sync()
    if target.dynamic is not None and not target.replicas:
        return "ready"  # scaled to zero: the first request wakes it
    if any(r.supervised is not None and not r.supervised.is_up() for r in target.replicas):
        return "restarting"
    up = any(r.available() for r in target.replicas)
    return "ready" if up else "degraded"


def target_status(target: Target) -> str:
    """:func:`target_state`, with the reason of a failure or a restart."""
    state = target_state(target)
    if state == "restarting":
        worker = next(r.supervised for r in target.replicas if r.supervised is not None)
        return f"restarting: the worker {worker.worker_state().last_exit}"
    return f"failed: {target.load_error}" if state == "failed" else state
