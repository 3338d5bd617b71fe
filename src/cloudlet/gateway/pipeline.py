"""The request pipeline, in DESIGN.md's order, as one object the API layer calls:

    tenancy (key → tenant) → scope (the key's models) → policy (openness) →
    limits (reserve the worst case) → router (pick a target, fail over) → engine (stream) →
    metering (tokens) → the request's record (ledger row, metrics, trace, access log, once)

Each stage is its own module; this one only puts them in order. Once the key names a tenant,
the request has a life (:mod:`cloudlet.gateway.life`) and ends in exactly one record: one
refused before it runs (scope, policy, unknown model, rate limit, budget, counters down) gets
a record of cost 0 with the refusal's code; a 401 names no tenant and is counted in metrics
instead. Without a ledger (``storage.ledger: off``, tests with fake engines) records still
reach the other sinks; without tenancy every caller is anonymous.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloudlet.domain import GenerationRequest, ModelId, Usage
from cloudlet.domain.tokens import estimate_tokens, prompt_token_bound
from cloudlet.errors import CloudletError, InvalidRequest, ModelNotPermittedForKey
from cloudlet.gateway.accounting import Accounting
from cloudlet.gateway.catalog import Catalog
from cloudlet.gateway.life import Arrival, Recorder, RequestLife
from cloudlet.gateway.prices import Prices
from cloudlet.gateway.pricing import embedding_bound
from cloudlet.gateway.record import Operation
from cloudlet.gateway.service import Embedding, Gateway, Generation
from cloudlet.gateway.tenancy import Tenancy
from cloudlet.ledger.keys import Tenant


class Pipeline:
    def __init__(
        self,
        gateway: Gateway,
        catalog: Catalog,
        tenancy: Tenancy | None = None,
        accounting: Accounting | None = None,
        *,
        recorder: Recorder | None = None,
    ) -> None:
        self.gateway = gateway
        self.catalog = catalog
        self.tenancy = tenancy
        if recorder is None:
            prices = accounting.prices if accounting is not None else Prices([], gateway.stats)
            recorder = Recorder(prices)
        self.recorder = recorder
        self.accounting = accounting

    @property
    def accounting(self) -> Accounting | None:
        """Keys' limits and the ledger (None: ``storage.ledger: off``)."""
        return self.recorder.accounting

    @accounting.setter
    def accounting(self, value: Accounting | None) -> None:
        self.recorder.accounting = value

    async def tenant(self, token: str | None) -> Tenant:
        """401 for a missing or wrong key (unless the server is in open mode)."""
        if self.tenancy is None:
            return Tenant.anonymous()
        return await self.tenancy.resolve(token)

    def _route_of(self, model: str) -> str | None:
        return model if self.gateway.is_route(model) else None

    def _admit_model(self, tenant: Tenant, model: str) -> list[str]:
        """Scope and policy for ``model`` and every target it may reach; returns the targets."""
        if not tenant.may_use(model):
            raise ModelNotPermittedForKey(
                f"This API key may not use model {model!r}.", param="model"
            )
        targets = self.gateway.targets_of(model)
        for target in targets:
            self.catalog.check(target)
        return targets

    def _check_images(self, request: GenerationRequest, targets: list[str]) -> None:
        """Images go only to models that declare vision; a 400 naming the model otherwise
        (rather than a silent loss of the image)."""
        if not any(m.parts for m in request.messages or ()):
            return
        for target in targets:
            if "vision" not in self.gateway.model(target).capabilities:
                raise InvalidRequest(
                    f"Model {target!r} does not accept images: send text only, or use a model "
                    "whose spec declares vision: true.",
                    param="messages",
                )

    async def check(self, token: str | None, model: str) -> list[str]:
        """The key, scope and policy checks of a request for ``model`` (for requests that
        generate nothing, such as counting tokens); returns the targets it may reach."""
        return self._admit_model(await self.tenant(token), model)

    async def _begin(
        self,
        token: str | None,
        arrival: Arrival | None,
        operation: Operation,
        model: str,
        request: GenerationRequest | None,
        *,
        stream: bool = False,
    ) -> RequestLife:
        """Resolve the key (a 401 names no tenant and ends in no record) and begin the life."""
        tenant = await self.tenant(token)
        life = self.recorder.begin(arrival or Arrival.now(), operation, model, stream=stream)
        life.tenant = tenant
        life.route = self._route_of(model)
        life.start(request)
        return life

    async def generate(
        self,
        token: str | None,
        request: GenerationRequest,
        arrival: Arrival | None = None,
        *,
        operation: Operation = "chat",
        stream: bool = False,
    ) -> Generation:
        """Run ``request`` for the key ``token``: admit, route, and return the started
        stream; its end (or a refusal or failure here) makes the request's record."""
        life = await self._begin(token, arrival, operation, request.model, request, stream=stream)
        try:
            targets = self._admit_model(life.tenant or Tenant.anonymous(), request.model)
            self._check_images(request, targets)
            request = self.gateway.bounded(request)  # before any money arithmetic
            # Every choice may generate max_tokens: n of them are reserved (and capped).
            life.max_tokens = request.completion_bound(
                self.gateway.max_tokens_default(request.model)
            )
            life.prompt_bound = prompt_token_bound(request)
            await self._admit(life, request, targets)
        except CloudletError as exc:
            await life.end("refused", exc.code or exc.type, http_status=exc.status)
            raise
        try:
            return await self.gateway.generate(request, life)
        except BaseException as exc:
            await life.fail(exc)
            raise

    async def embed(
        self,
        token: str | None,
        model: ModelId,
        texts: Sequence[str],
        arrival: Arrival | None = None,
    ) -> Embedding:
        life = await self._begin(token, arrival, "embeddings", model, None)
        try:
            targets = self._admit_model(life.tenant or Tenant.anonymous(), model)
            life.prompt_bound = embedding_bound(list(texts))
            await self._admit(
                life, None, targets, prompt_estimate=sum(estimate_tokens(t) for t in texts)
            )
        except CloudletError as exc:
            await life.end("refused", exc.code or exc.type, http_status=exc.status)
            raise
        try:
            embedding = await self.gateway.embed(model, texts, life)
        except BaseException as exc:
            await life.fail(exc)
            raise
        life.usage = Usage(embedding.result.prompt_tokens, 0)
        await life.end("ok")
        return embedding

    async def _admit(
        self,
        life: RequestLife,
        request: GenerationRequest | None,
        targets: list[str],
        *,
        prompt_estimate: int | None = None,
    ) -> None:
        """Price the request at each target it may reach and, with keys, reserve its worst
        case against the key's limits (429 when they refuse)."""
        accounting = self.accounting
        if accounting is None:
            life.prices = self.recorder.prices.of_targets(targets)
            return
        assert life.tenant is not None
        admission = await accounting.admit(
            life.tenant,
            request,
            model=life.model,
            route=life.route,
            targets=targets,
            max_tokens=life.max_tokens,
            prompt_estimate=prompt_estimate,
            prompt_bound=life.prompt_bound,
        )
        life.admission = admission
        life.prices = admission.prices
        life.prompt_bound = admission.prompt_bound
