"""The app factory. All state lives in the app (``app.state.gateway``), created per app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from fastapi import FastAPI

from cloudlet import __version__
from cloudlet.api.drain import DrainGuard, DrainState
from cloudlet.api.errors import install_error_handlers
from cloudlet.api.limits import BodyLimit
from cloudlet.api.metrics import make_registry
from cloudlet.api.metrics import router as metrics_router
from cloudlet.api.routes import chat, completions, embeddings, health, models
from cloudlet.api.schemas import ErrorResponse
from cloudlet.config import Spec
from cloudlet.engines.base import Engine
from cloudlet.gateway import Gateway

log = logging.getLogger(__name__)


def create_app(spec: Spec, engines: Mapping[str, Engine] | None = None) -> FastAPI:
    """Build the ASGI app for ``spec``.

    ``engines`` replaces the engines the spec would build (tests pass fakes). Models load in the
    background once the server is up, so ``/health`` answers at once and ``/ready`` turns 200
    when every model is loaded (a Kubernetes startup probe waits on it).
    """
    if engines is None:
        from cloudlet.engines.factory import build_engines

        engines = build_engines(spec)
    gateway = Gateway(engines)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(gateway.start(), name="load-models")
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await gateway.close()

    app = FastAPI(
        title="cloudlet",
        version=__version__,
        summary="OpenAI-compatible API over open models, local first.",
        lifespan=lifespan,
    )
    drain = DrainState()
    app.state.gateway = gateway
    app.state.spec = spec
    app.state.drain = drain
    app.state.metrics = make_registry(gateway, drain)
    install_error_handlers(app)
    for module in (models, chat, completions, embeddings, health):
        app.include_router(module.router)
    app.include_router(metrics_router)
    app.add_middleware(BodyLimit, max_bytes=spec.server.max_body_bytes)
    app.add_middleware(DrainGuard, state=drain)  # outermost: refuses before reading bodies
    _document_errors(app)
    return app


def _document_errors(app: FastAPI) -> None:
    """Put the error envelope's schema into /openapi.json (routes reference it)."""
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(
                ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").pop(
                    "$defs", {}
                )
            )
            components["ErrorResponse"] = ErrorResponse.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components["ErrorResponse"].pop("$defs", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
