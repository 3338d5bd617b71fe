"""The core request path end to end, without HTTP: authenticate → scope → reserve the worst
case → "call" → settle → ledger row. 100 concurrent requests at a budget's edge; the ledger
and the counters must agree to the nanos, overspend at most one reservation, and a restarted
process must remember what the period already spent.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from cloudlet.config.storage import CostSpec
from cloudlet.counters import Counters, FakeClock
from cloudlet.errors import BudgetExceeded
from cloudlet.ledger.keys import Tenant
from cloudlet.ledger.store import Ledger
from cloudlet.ledger.writer import UsageRow
from cloudlet.pricing import Money
from tests.unit.counters.backends import open_backend
from tests.unit.ledger.stores import ledger_url

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
PROMPT, MAX_TOKENS = 200, 300


async def _request(
    ledger: Ledger, counters: Counters, key: str, cost_spec: CostSpec, rng: random.Random
) -> str:
    tenant = await ledger.keys.authenticate(key)
    assert isinstance(tenant, Tenant) and tenant.key_id is not None
    assert tenant.may_use("smollm2")
    price = cost_spec.pricer().price(50.0)  # priced once, at admission
    try:
        reservation = await counters.reserve(
            tenant.key_id,
            tenant.limits,
            tokens=PROMPT + MAX_TOKENS,
            cost=price.worst_case(PROMPT, MAX_TOKENS),
        )
    except BudgetExceeded:
        return "refused"
    started = NOW
    await asyncio.sleep(0)  # the engine call: let every other request interleave here
    completion = rng.randrange(0, MAX_TOKENS + 1)
    cost = price.cost(PROMPT, completion)
    await counters.settle(reservation, tokens=PROMPT + completion, cost=cost)
    ledger.writer.record(
        UsageRow(
            request_id=uuid.uuid4().hex,
            ts=started,
            key_id=tenant.key_id,
            team=tenant.team,
            model="smollm2",
            route=None,
            target="smollm2",
            spilled=False,
            prompt_tokens=PROMPT,
            completion_tokens=completion,
            cost=cost,
            cloud_equivalent=cost_spec.reference().cost(PROMPT, completion),
            latency_ms=100,
            ttft_ms=10,
            status="ok",
        )
    )
    return "ok"


@pytest.mark.parametrize(
    ("database", "counters_backend"),
    [("sqlite", "memory"), ("postgresql", "redis")],
)
async def test_a_burst_at_the_budget_edge(
    database: str, counters_backend: str, tmp_path: Path
) -> None:
    clock = FakeClock(NOW.timestamp())
    cost_spec = CostSpec.model_validate({"hardware_per_hour": "36"})  # 0.0002 USD per token
    budget = Money(Decimal("2.00"), "USD")
    worst = cost_spec.pricer().price(50.0).worst_case(PROMPT, MAX_TOKENS)  # 0.10
    rng = random.Random(11)
    async with ledger_url(database, tmp_path) as url:
        ledger = await Ledger.open(url)
        try:
            created = await ledger.keys.create(
                "research", models=["smollm2"], budget=budget, period="day", now=NOW
            )
            async with open_backend(counters_backend, clock, seed=ledger.spent_since) as counters:
                outcomes = await asyncio.gather(
                    *(_request(ledger, counters, created.key, cost_spec, rng) for _ in range(100))
                )
                await ledger.writer.flush()
                state = await counters.budget_state(created.record.id, created.record.limits)
            (group,) = await ledger.report(by="key")
            assert outcomes.count("ok") == group.requests >= 20  # 2.00 / 0.10 reserved at once
            assert "refused" in outcomes
            assert group.cost.amount <= budget.amount + worst.amount  # at most one reservation
            assert group.cost.amount <= budget.amount  # (none: costs stay within reservations)
            assert state is not None and state.held == Money.zero()
            assert state.spent == group.cost  # counters and ledger agree to the nanos
            assert group.cloud_equivalent.amount > 0

            # A restarted replica (fresh counters) re-reads the day's spending from the ledger.
            async with open_backend(counters_backend, clock, seed=ledger.spent_since) as again:
                restarted = await again.budget_state(created.record.id, created.record.limits)
            assert restarted is not None and restarted.spent == group.cost
        finally:
            await ledger.close()
