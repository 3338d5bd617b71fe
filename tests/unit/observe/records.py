"""Request records as the gateway makes them, for the sinks' unit tests."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cloudlet.gateway.record import RequestRecord
from cloudlet.pricing import Money

BASE = RequestRecord(
    request_id="req-0001",
    ts=datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC),
    operation="chat",
    model="chat",
    route="chat",
    target="local",
    provider="llamacpp",
    spilled=False,
    cloud=False,
    key_id="key-1",
    team="alpha",
    status="ok",
    error=None,
    http_status=200,
    stream=False,
    prompt_tokens=9,
    completion_tokens=5,
    ttft_s=0.05,
    duration_s=0.45,
    cost=Money(Decimal("0.000002"), "USD"),
    cloud_equivalent=Money(Decimal("0.000010"), "USD"),
    finish_reason="stop",
)


def record(**changes: Any) -> RequestRecord:
    return dataclasses.replace(BASE, **changes)


def refused(
    code: str = "rate_limit_exceeded", http_status: int = 429, **changes: Any
) -> RequestRecord:
    zero = Money(Decimal(0), "USD")
    return record(
        status="refused",
        error=code,
        http_status=http_status,
        target=None,
        provider=None,
        prompt_tokens=0,
        completion_tokens=0,
        ttft_s=None,
        duration_s=0.001,
        cost=zero,
        cloud_equivalent=zero,
        finish_reason=None,
        **changes,
    )
