"""The app factory. All state lives in the app (``app.state.gateway``), created per app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Protocol

from fastapi import FastAPI
from starlette.types import ASGIApp

from cloudlet import __version__
from cloudlet.api import bodies
from cloudlet.api.anthropic_schemas import MessagesRequest
from cloudlet.api.disconnect import CancelOnDisconnect
from cloudlet.api.docs import install_docs
from cloudlet.api.drain import DrainGuard, DrainState
from cloudlet.api.errors import ContainAnsweredErrors, install_error_handlers
from cloudlet.api.limits import BodyLimit
from cloudlet.api.metrics import AuthFailures, make_registry
from cloudlet.api.metrics import router as metrics_router
from cloudlet.api.request_ids import RequestIds
from cloudlet.api.responses_schemas import ResponsesRequest
from cloudlet.api.routes import (
    admin,
    chat,
    completions,
    embeddings,
    health,
    messages,
    models,
    responses,
    tokenize,
)
from cloudlet.api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ErrorResponse,
)
from cloudlet.api.ui import install_ui
from cloudlet.config import Spec
from cloudlet.config.storage import StorageSpec, mask_url
from cloudlet.counters.base import Counters
from cloudlet.counters.factory import open_counters, open_route_budgets
from cloudlet.engines.base import Engine
from cloudlet.gateway import Gateway
from cloudlet.gateway.accounting import Accounting
from cloudlet.gateway.catalog import Catalog
from cloudlet.gateway.life import Recorder
from cloudlet.gateway.pipeline import Pipeline
from cloudlet.gateway.prices import Prices
from cloudlet.gateway.tenancy import Tenancy
from cloudlet.ledger.store import Ledger
from cloudlet.observe import install as install_observability

log = logging.getLogger(__name__)

#: Requests whose handler is cancelled when their client leaves (see api/disconnect.py).
GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")

#: Bodies the routes read themselves (see api/bodies.py): their schemas go into /openapi.json.
READ_BODIES = (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    MessagesRequest,
    ResponsesRequest,
)


class _App(FastAPI):
    """FastAPI, with an answered 500 leaving the connection usable (see ContainAnsweredErrors)
    and ``x-request-id`` on every answer, Starlette's own 500 included (RequestIds sits
    outside the error middleware that sends it)."""

    def build_middleware_stack(self) -> ASGIApp:
        return ContainAnsweredErrors(RequestIds(super().build_middleware_stack()))


class Store(Protocol):
    """A store requests depend on (counters, route budgets); ``/ready`` asks each."""

    async def ready(self) -> bool: ...


def create_app(
    spec: Spec,
    engines: Mapping[str, Engine] | None = None,
    catalog: Catalog | None = None,
    *,
    accounts: bool = True,
    admin_key: str | None = None,
    companions: Sequence[Callable[[], contextlib.AbstractAsyncContextManager[None]]] = (),
) -> FastAPI:
    """Build the ASGI app for ``spec``.

    ``engines`` replaces the engines the spec would build (tests pass fakes); ``catalog`` the
    transparency cards (built from the spec when not given). With ``accounts`` the lifespan opens
    the spec's storage (keys, usage ledger, counters) and every request is authenticated,
    limited, priced and recorded; ``admin_key`` is ``CLOUDLET_ADMIN_KEY``, accepted in every
    mode (see :mod:`cloudlet.gateway.tenancy`: auth fails closed; the lifespan refuses to
    start a server reachable from the network with no way to authenticate). Without
    ``accounts`` nothing is authenticated here: only for a caller that guards the door itself
    (the engine worker, behind its token or a private socket) and for tests. Models load in the
    background once the server is up, so ``/health`` answers at once and ``/ready`` turns 200
    when every model is loaded (a Kubernetes startup probe waits on it). ``companions`` run
    alongside the server, entered once the models have started loading (the in-cluster
    gateway's pod discovery is one).
    """
    storage = spec.storage.resolved()  # ${VAR}s in storage URLs, read once, here
    if engines is None:
        from cloudlet.engines.factory import build_engines

        engines = build_engines(spec)
    # Routes' cloud budgets are shared through Redis when the counters are (one budget for
    # every gateway replica); otherwise each process keeps its own.
    budgeted = any(route.cloud_budget is not None for route in spec.routes)
    route_budgets = open_route_budgets(storage.counters) if budgeted else None
    gateway = Gateway(engines, spec, budget_store=route_budgets)
    with_accounts = accounts and storage.ledger != "off"
    recorder = Recorder(Prices(spec.models, gateway.stats), currency=spec.currency)
    pipeline = Pipeline(
        gateway, catalog if catalog is not None else Catalog.from_spec(spec), recorder=recorder
    )
    if accounts:  # authentication holds with or without a ledger (the admin key works)
        pipeline.tenancy = Tenancy(None, loopback=spec.server.is_loopback, admin_key=admin_key)
    stores: list[Store] = [route_budgets] if route_budgets is not None else []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(app.state.observe)  # last out: flushes the spans
            if route_budgets is not None:
                stack.push_async_callback(route_budgets.close)
            if with_accounts:
                app.state.ledger, counters = await _open_accounts(
                    spec, storage, pipeline, admin_key, stack
                )
                stores.append(counters)
            if pipeline.tenancy is not None:
                await pipeline.tenancy.check_start()  # fails closed: never serve unprotected
            loading = asyncio.create_task(gateway.start(), name="load-models")
            try:
                for companion in companions:
                    await stack.enter_async_context(companion())
                yield
            finally:
                loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loading
                await gateway.close()

    app = _App(
        title="cloudlet",
        version=__version__,
        summary="OpenAI-compatible API over open models, local first.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load from a CDN: see cloudlet.api.docs
        redoc_url=None,
        # FastAPI's own OpenTelemetry hooks look up the global providers on every request once
        # opentelemetry is installed; cloudlet traces requests itself (GenAI conventions, its
        # own provider): see cloudlet.observe.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    drain = DrainState()
    app.state.gateway = gateway
    app.state.pipeline = pipeline
    app.state.recorder = recorder
    app.state.spec = spec
    app.state.catalog = pipeline.catalog
    app.state.drain = drain
    app.state.stores = stores
    app.state.ledger = None
    app.state.metrics = make_registry(gateway, drain)
    # Request metrics, access log and (when OTEL_* says so) traces, fed by every record.
    app.state.observe = install_observability(recorder, spec, app.state.metrics, gateway)
    app.state.auth_failures = AuthFailures(app.state.metrics)
    install_error_handlers(app)
    for module in (chat, completions, embeddings, messages, responses, models, tokenize, health):
        app.include_router(module.router)
    if accounts:
        app.include_router(admin.router)
        install_ui(app, recorder, admin_key=admin_key)  # /ui, fed by every record
    app.include_router(metrics_router)
    install_docs(app)
    app.add_middleware(CancelOnDisconnect, paths=GENERATION_PATHS)
    app.add_middleware(BodyLimit, max_bytes=spec.server.max_body_bytes)
    app.add_middleware(DrainGuard, state=drain)  # outermost: refuses before reading bodies
    _document_errors(app)
    return app


async def _open_accounts(
    spec: Spec,
    storage: StorageSpec,
    pipeline: Pipeline,
    admin_key: str | None,
    stack: contextlib.AsyncExitStack,
) -> tuple[Ledger, Counters]:
    """Open keys, ledger and counters; plug tenancy and accounting into the pipeline."""
    ledger = await Ledger.open(storage, admin_key=admin_key)
    stack.push_async_callback(ledger.close)
    counters = open_counters(storage.counters, seed=ledger.spent_since)
    stack.push_async_callback(counters.close)
    pipeline.tenancy = Tenancy(ledger.keys, loopback=spec.server.is_loopback, admin_key=admin_key)
    accounting = Accounting(
        counters, ledger.writer, pipeline.recorder.prices, currency=spec.currency
    )
    stack.push_async_callback(accounting.close)  # before the counters close
    pipeline.accounting = accounting
    # Route budgets start each period from what the ledger says it spent: restarts remember.
    pipeline.gateway.seed_budgets(ledger.spent_on)
    log.info("ledger: %s; counters: %s", mask_url(ledger.url), mask_url(storage.counters))
    return ledger, counters


def _document_errors(app: FastAPI) -> None:
    """Put the error envelope's schema and the bodies the routes read themselves into
    /openapi.json (routes reference them)."""
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, body in bodies.schemas(READ_BODIES).items():
                components.setdefault(name, body)
            components.update(
                ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").pop(
                    "$defs", {}
                )
            )
            components["ErrorResponse"] = ErrorResponse.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components["ErrorResponse"].pop("$defs", None)
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    # Validation errors are 400 in OpenAI's envelope here, never FastAPI's 422.
                    if responses.pop("422", None) is not None or operation.get("parameters"):
                        responses.setdefault(
                            "400",
                            {
                                "description": "Invalid request",
                                "content": {"application/json": {"schema": error_ref}},
                            },
                        )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
