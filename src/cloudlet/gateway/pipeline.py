"""The request pipeline, in DESIGN.md's order, as one object the API layer calls:

    tenancy (key → tenant) → scope (the key's models) → policy (openness) →
    limits (reserve the worst case) → router (pick a target, fail over) → engine (stream) →
    metering (tokens, cost) → ledger (settle, one row)

Each stage is its own module; this one only puts them in order. Once the key names a tenant,
every request gets its ledger row: one refused before it runs (scope, policy, unknown model,
rate limit, budget, counters down) gets a row of cost 0 with the refusal's code; a 401 names
no tenant and is counted in metrics instead. Without a ledger (``storage.ledger: off``, tests
with fake engines) there is no accounting stage; without tenancy every caller is anonymous.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloudlet.domain import GenerationRequest, ModelId
from cloudlet.engines.openai_wire import estimate_tokens
from cloudlet.errors import CloudletError, InvalidRequest, ModelNotPermittedForKey
from cloudlet.gateway.accounting import Accounted, Accounting
from cloudlet.gateway.catalog import Catalog
from cloudlet.gateway.pricing import embedding_bound
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
    ) -> None:
        self.gateway = gateway
        self.catalog = catalog
        self.tenancy = tenancy
        self.accounting = accounting

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

    async def generate(self, token: str | None, request: GenerationRequest) -> Generation:
        tenant = await self.tenant(token)
        if self.accounting is None:
            self._check_images(request, self._admit_model(tenant, request.model))
            return await self.gateway.generate(request)
        try:
            targets = self._admit_model(tenant, request.model)
            self._check_images(request, targets)
            route = self._route_of(request.model)
            request = self.gateway.bounded(request)  # before any money arithmetic
            max_tokens = request.max_tokens or self.gateway.max_tokens_default(request.model)
            admission = await self.accounting.admit(
                tenant,
                request,
                model=request.model,
                route=route,
                targets=targets,
                max_tokens=max_tokens,
            )
        except CloudletError as exc:
            self.accounting.refused(tenant, request.model, self._route_of(request.model), exc)
            raise
        try:
            generation = await self.gateway.generate(request)
        except BaseException as exc:
            await self.accounting.failed(admission, exc)
            raise
        events = Accounted(
            generation.events,
            self.accounting,
            admission,
            target=generation.target,
            spilled=generation.spilled,
        )
        return Generation(events, generation.target, generation.spilled)

    async def embed(self, token: str | None, model: ModelId, texts: Sequence[str]) -> Embedding:
        tenant = await self.tenant(token)
        if self.accounting is None:
            self._admit_model(tenant, model)
            return await self.gateway.embed(model, texts)
        try:
            targets = self._admit_model(tenant, model)
            estimate = sum(estimate_tokens(t) for t in texts)
            admission = await self.accounting.admit(
                tenant,
                None,
                model=model,
                route=self._route_of(model),
                targets=targets,
                max_tokens=0,
                prompt_estimate=estimate,
                prompt_bound=embedding_bound(list(texts)),
            )
        except CloudletError as exc:
            self.accounting.refused(tenant, model, self._route_of(model), exc)
            raise
        try:
            embedding = await self.gateway.embed(model, texts)
        except BaseException as exc:
            await self.accounting.failed(admission, exc)
            raise
        await self.accounting.settle(
            admission,
            target=embedding.target,
            spilled=embedding.spilled,
            prompt_tokens=embedding.result.prompt_tokens,
            completion_tokens=0,
            status="ok",
        )
        return embedding
