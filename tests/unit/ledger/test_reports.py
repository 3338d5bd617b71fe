from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cloudlet.ledger.reports import parse_since
from cloudlet.ledger.store import Ledger
from tests.unit.ledger.rows import T0, minutes, row


async def _fill(ledger: Ledger) -> None:
    for r in (
        row("1", cost="0.10", team="a", model="m1", target="m1", key_id="k1", at=T0),
        row(
            "2", cost="0.20", team="a", model="m2", target="cloud", key_id="k1", at=T0 + minutes(1)
        ),
        row("3", cost="0.30", team="b", model="m1", target="m1", key_id="k2", at=T0 + minutes(2)),
        row(
            "4",
            cost="1.00",
            team="b",
            model="m1",
            target="m1",
            key_id="k2",
            currency="EUR",
            at=T0 + minutes(3),
            status="cancelled",
        ),
        row("5", cost="0.05", team=None, model="m1", target=None, key_id=None, at=T0 - minutes(60)),
    ):
        ledger.writer.record(r)
    await ledger.writer.flush()


async def test_group_by_each_field_splits_currencies(ledger: Ledger) -> None:
    await _fill(ledger)
    by_team = {(g.group, g.cost.currency): g for g in await ledger.report(by="team")}
    assert set(by_team) == {("a", "USD"), ("b", "USD"), ("b", "EUR"), (None, "USD")}
    assert by_team[("a", "USD")].cost == by_team[("a", "USD")].cost.__class__(Decimal("0.3"), "USD")
    assert by_team[("a", "USD")].requests == 2
    assert by_team[("b", "EUR")].cloud_equivalent.amount == Decimal("3")
    by_target = {(g.group, g.cost.currency): g.requests for g in await ledger.report(by="target")}
    assert by_target == {("m1", "USD"): 2, ("cloud", "USD"): 1, ("m1", "EUR"): 1, (None, "USD"): 1}
    by_key = {g.group for g in await ledger.report(by="key")}
    assert by_key == {"k1", "k2", None}
    first = (await ledger.report(by="model"))[0]
    assert first.cost.amount == Decimal("1")  # most expensive first


async def test_since_filters_and_json_shape(ledger: Ledger) -> None:
    await _fill(ledger)
    groups = await ledger.report(by="team", since=T0 + minutes(1))
    assert sorted((g.group, g.requests) for g in groups) == [("a", 1), ("b", 1), ("b", 1)]
    usd = next(g for g in groups if g.group == "a")
    assert usd.as_json() == {
        "team": "a",
        "requests": 1,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost": "0.2",
        "local_cost": "0.2",
        "cloud_cost": "0",
        "cloud_equivalent": "0.6",
        "saved": "0.4",
        "currency": "USD",
    }


async def test_csv_export_has_every_row(ledger: Ledger) -> None:
    await _fill(ledger)
    out = io.StringIO()
    assert await ledger.write_csv(out, since=T0) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["request_id"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[3]["status"] == "cancelled" and rows[3]["currency"] == "EUR"
    assert rows[0]["cost"] == "0.1" and rows[0]["cloud_equivalent"] == "0.3"
    assert datetime.fromisoformat(rows[0]["ts"]) == T0


async def test_spent_since_seeds_budgets(ledger: Ledger) -> None:
    await _fill(ledger)
    assert await ledger.spent_since("k2", T0, "USD") == Decimal("0.3")
    assert await ledger.spent_since("k2", T0, "EUR") == Decimal("1")
    assert await ledger.spent_since("k1", T0 + minutes(1), "USD") == Decimal("0.2")
    assert await ledger.spent_since("nobody", T0, "USD") == Decimal(0)


def test_parse_since() -> None:
    now = datetime(2025, 6, 15, tzinfo=UTC)
    assert parse_since("7d", now=now) == now - timedelta(days=7)
    assert parse_since("24h", now=now) == now - timedelta(hours=24)
    assert parse_since("30m", now=now) == now - timedelta(minutes=30)
    assert parse_since("2w", now=now) == now - timedelta(weeks=2)
    assert parse_since("2025-06-01") == datetime(2025, 6, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="7d"):
        parse_since("last week")


async def test_a_route_budgets_seed_counts_its_targets_except_other_budgeted_routes(
    ledger: Ledger,
) -> None:
    rows = [
        row("1", cost="1", target="cloud", route="a"),
        row("2", cost="2", target="cloud", route="b"),  # another budgeted route's call
        row("3", cost="4", target="cloud"),  # by the model's name
        row("4", cost="8", target="local", route="a"),  # not a cloud target of a
        row("5", cost="16", target="cloud", route="a", at=T0 - timedelta(days=1)),  # yesterday
        row("6", cost="32", target="cloud", route="a", currency="EUR"),
    ]
    for r in rows:
        ledger.writer.record(r)
    await ledger.writer.flush()
    assert await ledger.spent_on(["cloud"], T0, "USD", ["b"]) == Decimal(5)
    assert await ledger.spent_on(["cloud"], T0, "USD") == Decimal(7)
    assert await ledger.spent_on([], T0, "USD") == Decimal(0)
