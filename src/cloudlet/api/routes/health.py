"""GET /health (the process is alive) and GET /ready (every model is loaded)."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cloudlet.api.routes.deps import GatewayDep

router = APIRouter()


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: 200 once every model is loaded, else 503")
async def ready(gateway: GatewayDep, request: Request) -> JSONResponse:
    draining = bool(request.app.state.drain.draining)
    ok = gateway.ready and not draining
    status = "draining" if draining else ("ready" if ok else "loading")
    body = {"status": status, "models": gateway.status()}
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
