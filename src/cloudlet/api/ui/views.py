"""What each dashboard view shows, read from the app's state when a page or chart asks.

Nothing here runs on the request path of the API: the live feed (a sink) has kept its numbers,
the gateway answers its stats and status from memory, and the ledger is read only for the
Usage view. Money stays :class:`~decimal.Decimal` for tables; charts get floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from cloudlet.config import Spec
from cloudlet.gateway import Gateway
from cloudlet.gateway.catalog import Catalog
from cloudlet.ledger.reports import UsageGroup
from cloudlet.ledger.store import Ledger
from cloudlet.observe.live import LiveFeed, ModelWindow, Series, Tally

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelRow:
    name: str
    kind: str  # "model" or "route"
    engine: str
    status: str
    cloud: bool
    mof_label: str
    mof_class: int | None
    mof_progress: str  # "class III: 67 %"
    license: str
    targets: tuple[str, ...]
    price: str
    requests: int  # since the process started: served (a model), asked for (a route)


def models(spec: Spec, gateway: Gateway, catalog: Catalog, feed: LiveFeed) -> list[ModelRow]:
    """Every served model, then every route, with its card's openness class and licence."""
    status = gateway.status()
    by_name = {m.name: m for m in spec.models}
    totals = feed.totals()
    asked = feed.asked()
    rows: list[ModelRow] = []
    for info in gateway.models():
        name = str(info.id)
        model = by_name.get(name)
        route = gateway.is_route(name)
        summary = catalog.summary(name) or {}
        progress: dict[str, int] = summary.get("mof_progress") or {}  # type: ignore[assignment]
        best = max(((int(k), v) for k, v in progress.items() if v), default=None)
        price = ""
        if model is not None and model.price is not None:
            p = model.price
            price = f"{p.input_per_mtok:f} / {p.output_per_mtok:f} {p.currency} per Mtok"
        elif model is not None and model.cost is not None:
            price = f"{model.cost.hardware_per_hour:f} {model.cost.currency} per hour"
        rows.append(
            ModelRow(
                name=name,
                kind="route" if route else "model",
                engine=info.engine,
                status=status.get(name, "unknown"),
                cloud=bool(model is not None and model.cloud),
                mof_label=str(summary.get("mof_label") or ("—" if route else "no card")),
                mof_class=summary.get("mof_class"),  # type: ignore[arg-type]
                mof_progress=f"class {_ROMAN[best[0]]}: {best[1]} %" if best else "",
                license=str(summary.get("license") or "—"),
                targets=tuple(gateway.targets_of(name)) if route else (),
                price=price,
                requests=asked.get(name, 0)
                if route
                else (totals[name].requests if name in totals else 0),
            )
        )
    return rows


_ROMAN = {1: "I", 2: "II", 3: "III"}


@dataclass(frozen=True, slots=True)
class TrafficRow:
    window: ModelWindow
    queue_depth: int
    running: int
    capacity: int


def traffic_rows(gateway: Gateway, feed: LiveFeed) -> list[TrafficRow]:
    """Each served model: the window's rates and latencies, and its queue right now."""
    stats = gateway.stats()
    windows = {w.name: w for w in feed.served()}
    rows = []
    for name in sorted(set(stats) | set(windows)):
        window = windows.get(name) or ModelWindow(name, Tally(), 0.0, 0.0, None, None)
        s = stats.get(name)
        rows.append(
            TrafficRow(
                window,
                s.queue_depth if s else 0,
                s.running if s else 0,
                s.capacity if s else 0,
            )
        )
    return rows


def traffic_charts(gateway: Gateway, feed: LiveFeed, now: float) -> Json:
    traffic = feed.traffic(now)
    ttft: dict[str, list[float | None]] = {}
    for name, p50 in traffic["ttft_p50_s"].values.items():
        ttft[f"{name} p50"] = p50
        ttft[f"{name} p95"] = traffic["ttft_p95_s"].values[name]
    stats = gateway.stats()
    return {
        "now": now,
        "bucket_s": feed.bucket_s,
        "charts": {
            "requests_per_s": _series(traffic["requests_per_s"]),
            "tokens_per_s": _series(traffic["tokens_per_s"]),
            # Buckets without a first token are gaps: points show the lone values.
            "ttft_s": {**_series(Series(traffic["ttft_p50_s"].times, ttft)), "points": True},
            # One point per read; the page keeps the ones it has seen (see dashboard.js).
            "queue_depth": {
                "times": [now],
                "series": {name: [s.queue_depth] for name, s in sorted(stats.items())},
                "accumulate": True,
            },
        },
    }


@dataclass(frozen=True, slots=True)
class BudgetRow:
    route: str
    period: str
    currency: str
    limit: Decimal
    spent: Decimal
    covers: tuple[str, ...]
    #: Remaining at the end of each bucket of the window (the last is now).
    remaining: list[Decimal] = field(default_factory=list)

    @property
    def left(self) -> Decimal:
        return max(Decimal(0), self.limit - self.spent)

    @property
    def used_share(self) -> float:
        return float(self.spent / self.limit) if self.limit else 1.0


async def budgets(spec: Spec, gateway: Gateway, feed: LiveFeed, now: float) -> list[BudgetRow]:
    """Each route with a cloud budget: its limit, what it spent this period, and its
    remaining budget over the window, rebuilt backwards from now by adding back the cloud
    cost each bucket charged to it."""
    cloud = {m.name for m in spec.models if m.cloud}
    budgeted = {r.name: r for r in spec.routes if r.cloud_budget is not None}
    rows = []
    for name, route in budgeted.items():
        assert route.cloud_budget is not None
        covers = tuple(t.model for t in route.targets if t.model in cloud)
        spent_money = await gateway.budget_spent(name)
        spent = spent_money.amount if spent_money is not None else Decimal(0)
        limit = route.cloud_budget.limit

        def charged(
            r: str | None, target: str, *, me: str = name, of: tuple[str, ...] = covers
        ) -> bool:
            # A request through this route, or straight to a cloud model it covers (through
            # no route, or one without a budget of its own), is charged to this budget.
            return r == me or ((r is None or r not in budgeted) and target in of)

        costs = feed.cloud_costs(charged, now)
        remaining: list[Decimal] = []
        left = limit - spent
        for cost in reversed(costs):
            remaining.append(left)
            left += cost
        remaining.reverse()
        rows.append(
            BudgetRow(
                name,
                route.cloud_budget.period,
                route.cloud_budget.currency,
                limit,
                spent,
                covers,
                remaining,
            )
        )
    return rows


def spill_rows(spec: Spec, feed: LiveFeed) -> list[ModelWindow]:
    """The routes (they are what spills) over the window, in the spec's order."""
    windows = {w.name: w for w in feed.requested()}
    return [
        windows.get(r.name) or ModelWindow(r.name, Tally(), 0.0, 0.0, None, None)
        for r in spec.routes
    ]


async def cost_charts(spec: Spec, gateway: Gateway, feed: LiveFeed, now: float) -> Json:
    costs = feed.costs(now)
    cumulative = {
        name.replace("_", "-"): _cumulative(values) for name, values in costs.values.items()
    }
    rows = await budgets(spec, gateway, feed, now)
    return {
        "now": now,
        "bucket_s": feed.bucket_s,
        "charts": {
            "cost": _series(Series(costs.times, cumulative)),
            "spill_share": {
                **_series(feed.spill_shares([r.name for r in spec.routes], now)),
                "points": True,
            },
            "budget_remaining": _series(
                Series(costs.times, {b.route: [float(v) for v in b.remaining] for b in rows})
            ),
        },
    }


@dataclass(frozen=True, slots=True)
class Usage:
    since: datetime | None
    teams: list[UsageGroup]
    keys: list[UsageGroup]
    key_teams: Mapping[str, str]


async def usage(ledger: Ledger, since: datetime | None) -> Usage:
    teams = await ledger.report(by="team", since=since)
    keys = await ledger.report(by="key", since=since)
    records = await ledger.keys.list(include_revoked=True)
    return Usage(since, teams, keys, {r.id: r.team for r in records})


def usage_charts(report: Usage) -> Json:
    """Cost and cloud-equivalent per team and per key: bars over the groups' index."""
    return {
        "charts": {
            "usage_teams": _bars(report.teams, lambda g: g.group or "(none)"),
            "usage_keys": _bars(report.keys, lambda g: g.group or "(admin / open)"),
        }
    }


def _bars(groups: list[UsageGroup], label: Any) -> Json:
    return {
        "times": list(range(len(groups))),
        "labels": [f"{label(g)} ({g.cost.currency})" for g in groups],
        "series": {
            "cost": [float(g.cost.amount) for g in groups],
            "cloud-equivalent": [float(g.cloud_equivalent.amount) for g in groups],
        },
        "bars": True,
    }


def _series(series: Series) -> Json:
    return {"times": series.times, "series": series.values}


def _cumulative(values: list[float | None]) -> list[float | None]:
    out: list[float | None] = []
    total = 0.0
    for value in values:
        total += value or 0.0
        out.append(total)
    return out
