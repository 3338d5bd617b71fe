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
import contextlib
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
    WorkerState,
)
from cloudlet.engines.base import ChatEngine, EmbeddingEngine, Engine
from cloudlet.errors import CloudletError, ContextLengthExceeded, ModelNotFound, WrongModelKind
from cloudlet.gateway.budget import BudgetStore, CloudBudget, Hold, InMemoryBudgetStore, RouteSeed
from cloudlet.gateway.health import HealthChecker
from cloudlet.gateway.life import RequestLife, error_code
from cloudlet.gateway.metering import Metered
from cloudlet.gateway.pricing import Money, cost, embedding_bound, embedding_cost, worst_case
from cloudlet.gateway.router import RouteRunner, RoutingEnv
from cloudlet.gateway.settling import SettleRetries
from cloudlet.gateway.targets import Replica, Target, TargetOptions, target_state, target_status

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
        store = budget_store if budget_store is not None else InMemoryBudgetStore()
        self.settle_retries = SettleRetries()
        routes = list(spec.routes) if spec is not None else []
        for route in routes:
            missing = [t.model for t in route.targets if t.model not in self._targets]
            if missing:
                raise ValueError(f"route {route.name!r} names models without engines: {missing}")
        # A call through a budgeted route is charged to that route's budget; a call that names
        # the cloud model (or comes through a route without a budget) to every budget that
        # covers it: no budget can be bypassed by naming the cloud model.
        own: dict[str, CloudBudget] = {}
        budgets_of: dict[str, list[CloudBudget]] = {}
        for route in routes:
            if route.cloud_budget is None:
                continue
            covered = [t.model for t in route.targets if self._targets[t.model].cloud]
            budget = CloudBudget(
                route.name, route.cloud_budget, store, clock, covered, self.settle_retries
            )
            own[route.name] = budget
            for name in covered:
                budgets_of.setdefault(name, []).append(budget)
        self._budgets = list(own.values())
        for budget in self._budgets:
            budget.other_routes = tuple(name for name in own if name != budget.route)
        self._routes = {
            name: RouteRunner(
                RouteSpec.model_construct(name=name, targets=[TargetSpec(model=name)]),
                [target],
                None,
                self._env,
                budgets_of,
            )
            for name, target in self._targets.items()
        }
        self._route_names: list[str] = []
        for route in routes:
            targets = [self._targets[t.model] for t in route.targets]
            ours = own.get(route.name)
            mine = {name: [ours] for name in ours.targets} if ours is not None else budgets_of
            self._routes[route.name] = RouteRunner(route, targets, ours, self._env, mine)
            self._route_names.append(route.name)
        # Checks pace themselves on real time; tests run rounds with check_health().
        self._health = HealthChecker(list(self._targets.values()), asyncio.sleep)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every engine, side by side (local models load in processes of their own);
        one that fails is reported and stays unavailable."""
        await asyncio.gather(*(self._load(name, t) for name, t in self._targets.items()))
        self._health.start()

    def seed_budgets(self, seed: RouteSeed) -> None:
        """Read what cloud budgets already spent this period from ``seed`` (the ledger), once
        per budget and period: a restart then remembers the day's spending."""
        for budget in self._budgets:
            budget.seed = seed

    async def _load(self, name: str, target: Target) -> None:
        try:
            await target.engine.start()
        except CloudletError as exc:  # a model that cannot load must not take the others down
            log.error("model %s failed to load: %s", name, exc.message)
            target.load_error = exc.message
        except Exception as exc:
            log.exception("model %s failed to load", name)
            target.load_error = str(exc) or type(exc).__name__
        else:
            target.loaded = True
            log.info("model %s ready (%s)", name, target.engine.info.engine)

    async def close(self) -> None:
        await self.settle_retries.close()
        await self._health.close()
        engines = [t.engine for t in self._targets.values()]
        await asyncio.gather(*(e.close() for e in engines), return_exceptions=True)
        for target in self._targets.values():
            target.loaded = False

    def readiness(self) -> tuple[str, bool]:
        """The server's state for ``/ready``, and whether that is ready to take traffic.

        ``loading`` and ``failed`` (a model did not load: a broken spec or file, which a
        rollout must stop on) are not ready. ``degraded`` (a model's every replica is down)
        is: this process still answers, routes fail over to their other targets, and the
        down model answers a clear 503; taking the gateway out of rotation would cut off the
        healthy models and fix nothing upstream.
        """
        states = {target_state(target) for target in self._targets.values()}
        if not states or "loading" in states:
            return "loading", False
        if "failed" in states:
            return "failed", False
        if "restarting" in states:  # a local model's worker is coming back: not yet
            return "restarting", False
        return ("degraded" if "degraded" in states else "ready"), True

    @property
    def ready(self) -> bool:
        return self.readiness()[1]

    def workers(self) -> dict[str, WorkerState]:
        """The worker process of each local model (models served in-process have none)."""
        return {
            name: r.supervised.worker_state()
            for name, t in self._targets.items()
            for r in t.replicas
            if r.supervised is not None
        }

    def status(self) -> dict[str, str]:
        """Per model and route: ``ready``, ``loading``, ``degraded`` (loaded, every replica
        down) or ``failed: <why>``.

        A route is ready while any of its targets is, degraded while none is but one is up.
        """
        out = {name: target_status(target) for name, target in self._targets.items()}
        for name in self._route_names:
            states = [out[t.name] for t in self._routes[name].targets]
            if "ready" in states:
                out[name] = "ready"
            else:
                out[name] = "degraded" if "degraded" in states else states[0]
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

    def bounded(self, request: GenerationRequest) -> GenerationRequest:
        """``request`` if its ``max_tokens`` fits the model's context; else a 400, before any
        arithmetic is done with it (a huge number must not reach the money code)."""
        limit = self.model(request.model).context_length
        if request.max_tokens is not None and request.max_tokens > limit:
            raise ContextLengthExceeded(
                f"max_tokens is too large: {request.max_tokens}. Model {request.model!r} can "
                f"produce at most {limit} tokens (its context length).",
                param="max_tokens",
            )
        return request

    def max_tokens_default(self, model: str) -> int:
        """What bounds a request without max_tokens: the largest default among its targets."""
        return max(t.options.max_tokens_default for t in self._runner(model).targets)

    def _runner(self, model: str) -> RouteRunner:
        runner = self._routes.get(model)
        if runner is None:
            raise ModelNotFound(model)
        return runner

    # --- requests --------------------------------------------------------------------------

    async def generate(
        self, request: GenerationRequest, life: RequestLife | None = None
    ) -> Generation:
        """Start ``request`` on the route's best target. With ``life``, the attempts and where
        it ran are noted on it, and the stream ends it (its one record)."""
        runner = self._runner(request.model)
        self._check_kind(request.model, runner.targets, "chat")
        request = self.bounded(request)
        clock = self._env.clock

        def price_of(target: Target) -> Money | None:
            price = target.options.price
            if price is None:
                return None
            return worst_case(price, request, target.options.max_tokens_default)

        async def attempt(
            target: Target, replica: Replica, held: Hold | None
        ) -> AsyncGenerator[GenerationEvent, None]:
            engine = cast(ChatEngine, replica.engine)  # the kind was checked above
            tried = life.attempt(target.name, engine.info.engine) if life is not None else None
            started = clock()
            replica.outstanding += 1
            try:
                with tried.trace if tried is not None else _nothing():
                    events = await engine.generate(request)
            except BaseException as exc:
                replica.outstanding -= 1
                if tried is not None:
                    tried.end(error_code(exc))
                raise
            stream = Metered(
                events,
                request=request,
                target=target,
                replica=replica,
                started=started,
                clock=clock,
                hold=held,
                life=life,
                tried=tried,
            )
            await stream.prime()
            return stream

        routed = await runner.run(request, attempt, price_of)
        if life is not None:
            provider = self._targets[routed.target].engine.info.engine
            life.served(routed.target, provider, routed.spilled)
        return Generation(routed.value, routed.target, routed.spilled)

    async def embed(
        self, model: ModelId, texts: Sequence[str], life: RequestLife | None = None
    ) -> Embedding:
        """Embed ``texts`` on the route's best target (``life`` as in :meth:`generate`; the
        caller ends it)."""
        runner = self._runner(model)
        self._check_kind(model, runner.targets, "embedding")
        batch = list(texts)

        def price_of(target: Target) -> Money | None:
            price = target.options.price
            return embedding_cost(price, batch) if price is not None else None

        async def attempt(target: Target, replica: Replica, held: Hold | None) -> EmbeddingResult:
            engine = cast(EmbeddingEngine, replica.engine)
            tried = life.attempt(target.name, engine.info.engine) if life is not None else None
            replica.outstanding += 1
            try:
                with tried.trace if tried is not None else _nothing():
                    result = await engine.embed(batch)
            except BaseException as exc:
                if tried is not None:
                    tried.end(error_code(exc))
                raise
            finally:
                replica.outstanding -= 1
            if tried is not None:
                tried.end(None)
            price = target.options.price
            if held is not None and price is not None:
                # Charged at most the bound that was reserved.
                tokens = min(result.prompt_tokens, embedding_bound(batch))
                await held.settle(cost(price, Usage(tokens, 0)))
            return result

        routed = await runner.run(None, attempt, price_of)
        if life is not None:
            provider = self._targets[routed.target].engine.info.engine
            life.served(routed.target, provider, routed.spilled)
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


def _nothing() -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()
