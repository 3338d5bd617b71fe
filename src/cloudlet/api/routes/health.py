"""GET /health (the process is alive) and GET /ready (every model loaded; which are down).

``/ready`` is 503 while a model loads, when one failed to load (``failed: <why>``) and while
draining; 200 when ready, and also when ``degraded``: a model whose every replica is down does
not take the gateway out of rotation (see :meth:`cloudlet.gateway.Gateway.readiness`).
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cloudlet.api.routes.deps import GatewayDep

router = APIRouter()


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: 200 once every model is loaded (also when one is degraded), else 503",
)
async def ready(gateway: GatewayDep, request: Request) -> JSONResponse:
    draining = bool(request.app.state.drain.draining)
    status, ok = gateway.readiness()
    if draining:
        status, ok = "draining", False
    body = {"status": status, "models": gateway.status()}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/stats", summary="Per-model engine statistics (queue depth, running, tokens/s)")
async def stats(gateway: GatewayDep) -> dict[str, dict[str, float | int]]:
    return {name: dataclasses.asdict(s) for name, s in gateway.stats().items()}
