"""Usage rows for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cloudlet.ledger.writer import Status, UsageRow
from cloudlet.pricing import Money

T0 = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


def row(
    request_id: str,
    *,
    cost: str = "0.000001",
    team: str | None = "research",
    model: str = "smollm2",
    target: str | None = "smollm2",
    key_id: str | None = "key_a",
    currency: str = "USD",
    at: datetime = T0,
    status: Status = "ok",
    prompt: int = 10,
    completion: int = 5,
    cloud: bool = False,
    route: str | None = None,
) -> UsageRow:
    """A row; a cloud row's cloud-equivalent is its cost, a local one's three times it."""
    return UsageRow(
        request_id=request_id,
        ts=at,
        key_id=key_id,
        team=team,
        model=model,
        route=route,
        target=target,
        spilled=False,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=Money(Decimal(cost), currency),
        cloud_equivalent=Money(Decimal(cost) * (1 if cloud else 3), currency),
        latency_ms=42,
        ttft_ms=7 if status == "ok" else None,
        status=status,
        error=None if status == "ok" else "upstream_timeout",
        cloud=cloud,
    )


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)
