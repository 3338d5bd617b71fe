"""RequestRecords made by hand, for the sinks' tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from cloudlet.gateway.record import RequestRecord
from cloudlet.pricing import Money

T0 = 1_700_000_000.0  # a multiple of 5 s


def rec(
    request_id: str = "r1",
    *,
    model: str = "chat",
    route: str | None = "chat",
    target: str | None = "local",
    spilled: bool = False,
    cloud: bool = False,
    status: str = "ok",
    prompt: int = 10,
    completion: int = 20,
    ttft: float | None = 0.1,
    cost: str = "0.001",
    equivalent: str = "0.004",
    currency: str = "USD",
) -> RequestRecord:
    return RequestRecord(
        request_id=request_id,
        ts=datetime.fromtimestamp(T0, UTC),
        operation="chat",
        model=model,
        route=route,
        target=target,
        provider="openai" if cloud else "llamacpp",
        spilled=spilled,
        cloud=cloud,
        key_id="k1",
        team="research",
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "server_error",
        http_status=200 if status == "ok" else 500,
        stream=False,
        prompt_tokens=prompt,
        completion_tokens=completion,
        ttft_s=ttft,
        duration_s=1.0,
        cost=Money(Decimal(cost), currency),
        cloud_equivalent=Money(Decimal(equivalent), currency),
    )
