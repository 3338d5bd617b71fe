"""Request-scoped access to app state (the gateway lives on ``app.state``, not in a global)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import Depends, Request

from cloudlet.domain import Finished, GenerationEvent, TextDelta
from cloudlet.gateway import Gateway
from cloudlet.gateway.pipeline import Pipeline


async def _gateway(request: Request) -> Gateway:
    # async: FastAPI runs a sync dependency in its thread pool, a hop on every request.
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]


async def _pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


async def bearer(request: Request) -> str | None:
    """The API key from ``Authorization: Bearer KEY`` (or ``x-api-key``), if any."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


PipelineDep = Annotated[Pipeline, Depends(_pipeline)]
TokenDep = Annotated[str | None, Depends(bearer)]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


async def collect(events: AsyncGenerator[GenerationEvent, None]) -> tuple[str, Finished]:
    """Drain a stream into its text and final event (non-streaming responses)."""
    parts: list[str] = []
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            else:
                return "".join(parts), event
    finally:
        await events.aclose()
    raise RuntimeError("engine stream ended without a Finished event")


def finish_reason(event: Finished) -> str:
    return "length" if event.reason == "length" else "stop"
