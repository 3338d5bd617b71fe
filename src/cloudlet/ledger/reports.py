"""Reading the ledger: usage grouped by team, model, target or key; rows as CSV; spending.

Sums are computed by the database over integer nanos and turned into :class:`Decimal` here,
so a report's total equals the sum of its rows exactly. Groups are split by currency too:
amounts in different currencies are never added.

Each group says what ran on our own hardware (``local_cost``: local models at their hardware
price, self-hosted remote engines at theirs), what the cloud charged (``cloud_cost``: the
``cloud: true`` targets), what the same tokens would have cost at the reference cloud price
(``cloud_equivalent``), and what running locally saved: the cloud-equivalent of the local
requests minus their cost (negative when local hardware was dearer than the cloud).
"""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TextIO

from sqlalchemy import ColumnElement, RowMapping, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cloudlet.ledger.tables import usage
from cloudlet.pricing import Money

GroupBy = Literal["team", "model", "target", "key"]
_COLUMNS: Mapping[GroupBy, ColumnElement[Any]] = {
    "team": usage.c.team,
    "model": usage.c.model,
    "target": usage.c.target,
    "key": usage.c.key_id,
}
_SINCE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
CSV_FIELDS = (
    "request_id",
    "ts",
    "key_id",
    "team",
    "model",
    "route",
    "target",
    "spilled",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "cloud_equivalent",
    "currency",
    "latency_ms",
    "ttft_ms",
    "status",
    "error",
    "cloud",
    "client_request_id",
)


@dataclass(frozen=True, slots=True)
class UsageGroup:
    by: GroupBy
    group: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Money
    cloud_equivalent: Money
    local_cost: Money | None = None  # None: computed as cost - cloud_cost
    cloud_cost: Money | None = None
    saved: Money | None = None

    @property
    def local(self) -> Money:
        if self.local_cost is not None:
            return self.local_cost
        return self.cost - self.cloud

    @property
    def cloud(self) -> Money:
        return self.cloud_cost if self.cloud_cost is not None else Money.zero(self.cost.currency)

    @property
    def savings(self) -> Money:
        """The local requests' cloud-equivalent minus their cost."""
        if self.saved is not None:
            return self.saved
        return self.cloud_equivalent - self.cost

    def as_json(self) -> dict[str, Any]:
        """Money as strings: JSON numbers would go through floats in most readers."""
        return {
            self.by: self.group,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": decimal_str(self.cost.amount),
            "local_cost": decimal_str(self.local.amount),
            "cloud_cost": decimal_str(self.cloud.amount),
            "cloud_equivalent": decimal_str(self.cloud_equivalent.amount),
            "saved": decimal_str(self.savings.amount),
            "currency": self.cost.currency,
        }


def decimal_str(amount: Decimal) -> str:
    """``amount`` without trailing zeros or exponent: ``5``, ``0.000003702``."""
    return f"{amount.normalize():f}"


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """``7d``, ``24h``, ``30m``, ``90s``, ``2w`` before now, or an ISO date/time (UTC if naive)."""
    now = now or datetime.now(UTC)
    match = _SINCE.match(value.strip().lower())
    if match:
        amount, unit = int(match[1]), match[2]
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expected a duration such as 7d, 24h, 30m or an ISO date, got {value!r}"
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _nanos(value: Any) -> int:
    return int(value or 0)


async def usage_report(
    engine: AsyncEngine, *, by: GroupBy = "team", since: datetime | None = None
) -> list[UsageGroup]:
    """Usage per group (and currency), most expensive first."""
    column = _COLUMNS[by]
    cost = func.sum(usage.c.cost_nanos)
    cloud = usage.c.cloud
    query = (
        select(
            column.label("group"),
            usage.c.currency,
            func.count().label("requests"),
            func.sum(usage.c.prompt_tokens).label("prompt_tokens"),
            func.sum(usage.c.completion_tokens).label("completion_tokens"),
            cost.label("cost"),
            func.sum(usage.c.cloud_equivalent_nanos).label("cloud_equivalent"),
            func.sum(case((cloud, usage.c.cost_nanos), else_=0)).label("cloud_cost"),
            func.sum(
                case((cloud, 0), else_=usage.c.cloud_equivalent_nanos - usage.c.cost_nanos)
            ).label("saved"),
        )
        .group_by(column, usage.c.currency)
        .order_by(cost.desc(), column)
    )
    if since is not None:
        query = query.where(usage.c.ts >= since)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        UsageGroup(
            by=by,
            group=row["group"],
            requests=int(row["requests"]),
            prompt_tokens=int(row["prompt_tokens"] or 0),
            completion_tokens=int(row["completion_tokens"] or 0),
            cost=Money.from_nanos(_nanos(row["cost"]), row["currency"]),
            cloud_equivalent=Money.from_nanos(_nanos(row["cloud_equivalent"]), row["currency"]),
            local_cost=Money.from_nanos(
                _nanos(row["cost"]) - _nanos(row["cloud_cost"]), row["currency"]
            ),
            cloud_cost=Money.from_nanos(_nanos(row["cloud_cost"]), row["currency"]),
            saved=Money.from_nanos(_nanos(row["saved"]), row["currency"]),
        )
        for row in rows
    ]


async def spent_since(engine: AsyncEngine, key_id: str, since: datetime, currency: str) -> Decimal:
    """What ``key_id`` spent since ``since`` in ``currency``: the counters' budget seed."""
    query = select(func.sum(usage.c.cost_nanos)).where(
        usage.c.key_id == key_id, usage.c.ts >= since, usage.c.currency == currency
    )
    async with engine.connect() as conn:
        total = (await conn.execute(query)).scalar()
    return Money.from_nanos(_nanos(total), currency).amount


async def spent_on(
    engine: AsyncEngine,
    targets: Sequence[str],
    since: datetime,
    currency: str,
    exclude_routes: Sequence[str] = (),
) -> Decimal:
    """What requests that ran on ``targets`` cost since ``since`` in ``currency``, except those
    sent through ``exclude_routes`` (routes with budgets of their own): a route's cloud
    budget's seed."""
    if not targets:
        return Decimal(0)
    query = select(func.sum(usage.c.cost_nanos)).where(
        usage.c.target.in_(list(targets)), usage.c.ts >= since, usage.c.currency == currency
    )
    if exclude_routes:
        query = query.where(
            or_(usage.c.route.is_(None), usage.c.route.not_in(list(exclude_routes)))
        )
    async with engine.connect() as conn:
        total = (await conn.execute(query)).scalar()
    return Money.from_nanos(_nanos(total), currency).amount


def _csv_values(row: RowMapping) -> dict[str, Any]:
    values = {name: row[name] for name in CSV_FIELDS if name in row}
    values["ts"] = row["ts"].isoformat()
    values["cost"] = decimal_str(Money.from_nanos(row["cost_nanos"]).amount)
    values["cloud_equivalent"] = decimal_str(Money.from_nanos(row["cloud_equivalent_nanos"]).amount)
    return values


async def rows_of_request(engine: AsyncEngine, request_id: str) -> list[dict[str, Any]]:
    """The rows of a request, found by our id (the ledger's, unique) or by the client's own
    ``x-request-id`` (clients may reuse theirs: then every request that used it)."""
    query = (
        select(usage)
        .where(or_(usage.c.request_id == request_id, usage.c.client_request_id == request_id))
        .order_by(usage.c.ts, usage.c.id)
    )
    async with engine.connect() as conn:
        result = await conn.execute(query)
        return [_csv_values(row) for row in result.mappings()]


async def iter_rows(
    engine: AsyncEngine, *, since: datetime | None = None, chunk: int = 1000
) -> AsyncIterator[dict[str, Any]]:
    """Every usage row (oldest first) as CSV-ready values, streamed in chunks."""
    query = select(usage).order_by(usage.c.ts, usage.c.id)
    if since is not None:
        query = query.where(usage.c.ts >= since)
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=chunk))
        async for row in result.mappings():
            yield _csv_values(row)


async def write_rows_csv(engine: AsyncEngine, out: TextIO, *, since: datetime | None = None) -> int:
    """Write the usage rows as CSV (header first) to ``out``; returns the number of rows."""
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    async for values in iter_rows(engine, since=since):
        writer.writerow(values)
        count += 1
    return count
