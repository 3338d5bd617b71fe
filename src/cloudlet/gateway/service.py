"""The gateway: one object the API layer talks to, owning engines, targets and routes.

A request names a model or a route. A model is a route of one target (its replicas still
balance and fail over); a route maps a public name to several models with a policy and,
optionally, a cloud budget (see :mod:`cloudlet.gateway.router`). ``generate`` and ``embed``
return the result together with where it ran, which the API layer turns into the
``x-cloudlet-target`` and ``x-cloudlet-spilled`` headers; nothing here knows about HTTP.

``generate`` returns once the first event is in hand, so that every failure before the first
token can fail over unseen; after it, failures end the stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from cloudlet.config import Spec
from cloudlet.config.remote import RouteSpec, TargetSpec
from cloudlet.domain import (
    EmbeddingResult,
    EngineStats,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    ModelInfo,
    ModelKind,
    Usage,
)
from cloudlet.engines.base import ChatEngine, EmbeddingEngine, Engine
from cloudlet.errors import ModelNotFound, WrongModelKind
from cloudlet.gateway.budget import BudgetStore, CloudBudget, InMemoryBudgetStore, Reservation
from cloudlet.gateway.health import HealthChecker
from cloudlet.gateway.metering import Metered
from cloudlet.gateway.pricing import Money, cost, embedding_cost, worst_case
from cloudlet.gateway.router import RouteRunner, RoutingEnv
from cloudlet.gateway.targets import Replica, Target, TargetOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Generation:
    """A started generation: its events, the model it runs on, and whether it spilled."""

    events: AsyncGenerator[GenerationEvent, None]
    target: str
    spilled: bool


@dataclass(frozen=True, slots=True)
class Embedding:
    result: EmbeddingResult
    target: str
    spilled: bool


class Gateway:
    def __init__(
        self,
        engines: Mapping[str, Engine],
        spec: Spec | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        budget_store: BudgetStore | None = None,
    ) -> None:
        """``spec`` supplies routes and each model's routing options (price, cloud, breaker);
        engines it does not describe get the defaults. ``clock`` (seconds since the epoch),
        ``sleep`` and ``rng`` drive budgets, breakers and backoff; tests pass fakes."""
        rng = rng or random.Random()  # noqa: S311 (jitter and weights, not secrets)
        self._env = RoutingEnv(clock, sleep, rng)
        models = {m.name: m for m in spec.models} if spec is not None else {}
        self._targets = {
            name: Target(name, engine, TargetOptions.of(models.get(name)), clock)
            for name, engine in engines.items()
        }
        self._routes = {
            name: RouteRunner(
                RouteSpec.model_construct(name=name, targets=[TargetSpec(model=name)]),
                [target],
                None,
                self._env,
            )
            for name, target in self._targets.items()
        }
        store = budget_store if budget_store is not None else InMemoryBudgetStore()
        self._route_names: list[str] = []
        for route in spec.routes if spec is not None else []:
            missing = [t.model for t in route.targets if t.model not in self._targets]
            if missing:
                raise ValueError(f"route {route.name!r} names models without engines: {missing}")
            budget = (
                CloudBudget(route.name, route.cloud_budget, store, clock)
                if route.cloud_budget is not None
                else None
            )
            targets = [self._targets[t.model] for t in route.targets]
            self._routes[route.name] = RouteRunner(route, targets, budget, self._env)
            self._route_names.append(route.name)
        # Checks pace themselves on real time; tests run rounds with check_health().
        self._health = HealthChecker(list(self._targets.values()), asyncio.sleep)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every engine; one that fails is reported and stays unavailable."""
        for name, target in self._targets.items():
            try:
                await target.engine.start()
            except Exception as exc:  # a model that cannot load must not take the others down
                log.exception("model %s failed to load", name)
                target.load_error = str(exc)
            else:
                target.loaded = True
                log.info("model %s ready (%s)", name, target.engine.info.engine)
        self._health.start()

    async def close(self) -> None:
        await self._health.close()
        engines = [t.engine for t in self._targets.values()]
        await asyncio.gather(*(e.close() for e in engines), return_exceptions=True)
        for target in self._targets.values():
            target.loaded = False

    @property
    def ready(self) -> bool:
        return bool(self._targets) and all(t.loaded for t in self._targets.values())

    def status(self) -> dict[str, str]:
        """Per model and route: ``ready``, ``loading`` or ``failed: <why>``.

        A route is ready while any of its targets is.
        """
        out = {name: _status(target) for name, target in self._targets.items()}
        for name in self._route_names:
            states = [out[t.name] for t in self._routes[name].targets]
            out[name] = "ready" if "ready" in states else states[0]
        return out

    def stats(self) -> dict[str, EngineStats]:
        return {name: target.engine.stats() for name, target in self._targets.items()}

    async def check_health(self) -> None:
        """Run one round of active health checks now (they also run on their interval)."""
        await self._health.check_once()

    async def budget_spent(self, route: str) -> Money | None:
        """What ``route`` has spent (and holds) of its cloud budget this period."""
        budget = self._runner(route).budget
        return await budget.spent() if budget is not None else None

    # --- models ----------------------------------------------------------------------------

    def models(self) -> list[ModelInfo]:
        return [t.engine.info for t in self._targets.values()] + [
            self.model(name) for name in self._route_names
        ]

    def model(self, model: str) -> ModelInfo:
        target = self._targets.get(model)
        if target is not None:
            return target.engine.info
        runner = self._runner(model)
        infos = [t.engine.info for t in runner.targets]
        return ModelInfo(
            id=ModelId(model),
            kind=infos[0].kind,
            engine="route",
            context_length=min(i.context_length for i in infos),
            created=min(i.created for i in infos),
            capabilities=tuple(
                c for c in infos[0].capabilities if all(c in i.capabilities for i in infos)
            ),
        )

    def engine(self, model: str) -> Engine:
        target = self._targets.get(model)
        if target is None:
            raise ModelNotFound(model)
        return target.engine

    def is_route(self, model: str) -> bool:
        return model in self._routes and model not in self._targets

    def targets_of(self, model: str) -> list[str]:
        """The models a request for ``model`` may run on: itself, or its route's targets."""
        return [t.name for t in self._runner(model).targets]

    def max_tokens_default(self, model: str) -> int:
        """What bounds a request without max_tokens: the largest default among its targets."""
        return max(t.options.max_tokens_default for t in self._runner(model).targets)

    def _runner(self, model: str) -> RouteRunner:
        runner = self._routes.get(model)
        if runner is None:
            raise ModelNotFound(model)
        return runner

    # --- requests --------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> Generation:
        runner = self._runner(request.model)
        self._check_kind(request.model, runner.targets, "chat")
        clock = self._env.clock

        def price_of(target: Target) -> Money | None:
            price = target.options.price
            if price is None:
                return None
            return worst_case(price, request, target.options.max_tokens_default)

        async def attempt(
            target: Target, replica: Replica, reservation: Reservation | None
        ) -> AsyncGenerator[GenerationEvent, None]:
            engine = cast(ChatEngine, replica.engine)  # the kind was checked above
            started = clock()
            replica.outstanding += 1
            try:
                events = await engine.generate(request)
            except BaseException:
                replica.outstanding -= 1
                raise
            stream = Metered(
                events,
                request=request,
                target=target,
                replica=replica,
                started=started,
                clock=clock,
                budget=runner.budget,
                reservation=reservation,
            )
            await stream.prime()
            return stream

        routed = await runner.run(request, attempt, price_of)
        return Generation(routed.value, routed.target, routed.spilled)

    async def embed(self, model: ModelId, texts: Sequence[str]) -> Embedding:
        runner = self._runner(model)
        self._check_kind(model, runner.targets, "embedding")
        batch = list(texts)

        def price_of(target: Target) -> Money | None:
            price = target.options.price
            return embedding_cost(price, batch) if price is not None else None

        async def attempt(
            target: Target, replica: Replica, reservation: Reservation | None
        ) -> EmbeddingResult:
            engine = cast(EmbeddingEngine, replica.engine)
            replica.outstanding += 1
            try:
                result = await engine.embed(batch)
            finally:
                replica.outstanding -= 1
            price = target.options.price
            if reservation is not None and runner.budget is not None and price is not None:
                await runner.budget.settle(reservation, cost(price, Usage(result.prompt_tokens, 0)))
            return result

        routed = await runner.run(None, attempt, price_of)
        return Embedding(routed.value, routed.target, routed.spilled)

    def _check_kind(self, model: str, targets: Sequence[Target], kind: ModelKind) -> None:
        actual = targets[0].engine.info.kind
        if actual == kind:
            return
        if kind == "chat":
            raise WrongModelKind(
                f"model {model!r} is an {actual} model; it cannot generate text "
                "(use /v1/embeddings)",
                param="model",
            )
        raise WrongModelKind(
            f"model {model!r} is a {actual} model; it does not make embeddings", param="model"
        )


def _status(target: Target) -> str:
    if target.loaded:
        return "ready"
    return f"failed: {target.load_error}" if target.load_error is not None else "loading"
