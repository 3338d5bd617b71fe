"""``/docs`` (Swagger UI) and ``/redoc``, served from this process: they work offline.

FastAPI's pages load their scripts from a CDN, so on a laptop without internet (or a cluster
without egress) ``/docs`` is blank. The assets come from the ``fastapi-offline`` package, which
ships Swagger UI 5 (needed for FastAPI's OpenAPI 3.1) and ReDoc as plain files; only its files
are used, located without importing it. ``/openapi.json`` is the schema either way.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"


def assets_dir() -> Path | None:
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "static"
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def install_docs(app: FastAPI) -> None:
    """Add /docs and /redoc with local assets (or, without them, a page that says where the
    schema is rather than a blank one)."""
    assets = assets_dir()
    title = f"{app.title} API"

    if assets is None:

        @app.get("/docs", include_in_schema=False)
        async def no_docs() -> HTMLResponse:
            return HTMLResponse(
                "<p>The interactive docs need the <code>fastapi-offline</code> package; "
                'the schema is at <a href="/openapi.json">/openapi.json</a>.</p>'
            )

        return
    app.mount(ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=title,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=title,
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
