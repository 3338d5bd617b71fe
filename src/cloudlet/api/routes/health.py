"""GET /health (the process is alive) and GET /ready (every model loaded; which are down).

``/ready`` is 503 while a model loads, when one failed to load (``failed: <why>``) and while
draining; 200 when ready, and also when ``degraded``: a model whose every replica is down does
not take the gateway out of rotation (see :meth:`cloudlet.gateway.Gateway.readiness`).
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cloudlet.api.routes.deps import GatewayDep, PipelineDep

router = APIRouter()


@router.get("/health", summary="Liveness, and the auth mode (open or api-key)")
async def health(pipeline: PipelineDep) -> dict[str, str]:
    tenancy = pipeline.tenancy
    return {"status": "ok", "auth": tenancy.mode if tenancy is not None else "open"}


@router.get(
    "/ready",
    summary="Readiness: 200 once every model is loaded (also when one is degraded) and the "
    "counters store answers, else 503",
)
async def ready(gateway: GatewayDep, request: Request) -> JSONResponse:
    draining = bool(request.app.state.drain.draining)
    stores = [await store.ready() for store in request.app.state.stores]
    storage_ok = all(stores)
    status, ok = gateway.readiness()
    if draining:
        status, ok = "draining", False
    elif not storage_ok:
        status, ok = "storage unavailable", False
    body = {
        "status": status,
        "models": gateway.status(),
        "storage": "ok" if storage_ok else "unavailable",
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/stats", summary="Per-model engine statistics (queue depth, running, tokens/s)")
async def stats(gateway: GatewayDep) -> dict[str, dict[str, object]]:
    """Each model's engine statistics; a local model's also say how its worker process is
    (``worker``: state, restarts, safe mode, pid, how the last one ended)."""
    out: dict[str, dict[str, object]] = {
        name: dataclasses.asdict(s) for name, s in gateway.stats().items()
    }
    for name, state in gateway.workers().items():
        out[name]["worker"] = dataclasses.asdict(state)
    return out
