"""Request-scoped access to app state (the gateway lives on ``app.state``, not in a global)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated

from fastapi import Depends, Request

from cloudlet.domain import Finished, GenerationEvent, TextDelta
from cloudlet.gateway import Gateway


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]


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
