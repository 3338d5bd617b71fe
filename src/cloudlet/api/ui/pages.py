"""The dashboard's views: whole pages, the fragments htmx refreshes, and the charts' JSON.

Each view is a page (``/ui``, ``/ui/traffic``, ``/ui/cost``, ``/ui/usage``,
``/ui/requests``); the live parts of a page reload themselves from ``/ui/part/...`` (HTML, by
htmx) and ``/ui/data/...`` (JSON, by dashboard.js into uPlot charts) every few seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from cloudlet.api.ui import views
from cloudlet.api.ui.auth import Viewer, data_viewer, to_login, viewer
from cloudlet.api.ui.templating import SECURITY_HEADERS, page
from cloudlet.config import Spec
from cloudlet.errors import InvalidRequest
from cloudlet.gateway import Gateway
from cloudlet.gateway.catalog import Catalog
from cloudlet.ledger.reports import parse_since
from cloudlet.ledger.store import Ledger
from cloudlet.observe.live import LiveFeed

router = APIRouter(prefix="/ui", include_in_schema=False)
#: For fragments and data: a 401 without a login.
NEEDS_LOGIN = [Depends(data_viewer)]
#: For pages: None sends the browser to the login form.
PageViewer = Annotated[Viewer | None, Depends(viewer)]

#: The periods the Usage view offers (any duration or ISO date works in the query too).
PERIODS = (("1h", "last hour"), ("24h", "last 24 hours"), ("7d", "last 7 days"), ("30d", "30 days"))
RECENT_ROWS = 100


def _state(request: Request) -> tuple[Spec, Gateway, LiveFeed]:
    state = request.app.state
    return state.spec, state.gateway, state.live


def _page(request: Request, who: Viewer, name: str, view: str, **context: Any) -> Response:
    return page(request, name, {"view": view, "viewer": who, **context})


def _fragment(request: Request, name: str, **context: Any) -> Response:
    return page(request, name, context)


def _json(body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers=SECURITY_HEADERS)


# --- Models ---------------------------------------------------------------------------------


def _models(request: Request) -> list[views.ModelRow]:
    spec, gateway, feed = _state(request)
    catalog: Catalog = request.app.state.catalog
    return views.models(spec, gateway, catalog, feed)


@router.get("")
async def models_page(request: Request, who: PageViewer) -> Response:
    if who is None:
        return to_login()
    return _page(request, who, "models.html", "models", rows=_models(request))


@router.get("/", include_in_schema=False)
async def slash() -> Response:
    return RedirectResponse("/ui", status_code=308)


@router.get("/part/models", dependencies=NEEDS_LOGIN)
async def models_part(request: Request) -> Response:
    return _fragment(request, "_models.html", rows=_models(request))


# --- Traffic --------------------------------------------------------------------------------


@router.get("/traffic")
async def traffic_page(request: Request, who: PageViewer) -> Response:
    if who is None:
        return to_login()
    _, gateway, feed = _state(request)
    rows = views.traffic_rows(gateway, feed)
    return _page(request, who, "traffic.html", "traffic", rows=rows, feed=feed)


@router.get("/part/traffic", dependencies=NEEDS_LOGIN)
async def traffic_part(request: Request) -> Response:
    _, gateway, feed = _state(request)
    return _fragment(request, "_traffic.html", rows=views.traffic_rows(gateway, feed))


@router.get("/data/traffic", dependencies=NEEDS_LOGIN)
async def traffic_data(request: Request) -> Response:
    _, gateway, feed = _state(request)
    return _json(views.traffic_charts(gateway, feed, feed.now()))


# --- Cost -----------------------------------------------------------------------------------


async def _cost_context(request: Request) -> dict[str, Any]:
    spec, gateway, feed = _state(request)
    return {
        "total": feed.total(),
        "window": feed.window(),
        "spills": views.spill_rows(spec, feed),
        "budgets": await views.budgets(spec, gateway, feed, feed.now()),
        "currency": spec.currency,
        "feed": feed,
    }


@router.get("/cost")
async def cost_page(request: Request, who: PageViewer) -> Response:
    if who is None:
        return to_login()
    return _page(request, who, "cost.html", "cost", **await _cost_context(request))


@router.get("/part/cost", dependencies=NEEDS_LOGIN)
async def cost_part(request: Request) -> Response:
    return _fragment(request, "_cost.html", **await _cost_context(request))


@router.get("/data/cost", dependencies=NEEDS_LOGIN)
async def cost_data(request: Request) -> Response:
    spec, gateway, feed = _state(request)
    return _json(await views.cost_charts(spec, gateway, feed, feed.now()))


# --- Usage (from the ledger) ----------------------------------------------------------------


def _since(value: str) -> datetime | None:
    if value == "all":
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="since") from None


Since = Annotated[str, Query(max_length=40, pattern=r"^[0-9A-Za-z:.+\- ]+$")]


@router.get("/usage")
async def usage_page(request: Request, who: PageViewer, since: Since = "24h") -> Response:
    if who is None:
        return to_login()
    ledger: Ledger | None = request.app.state.ledger
    report, error = None, None
    try:
        report = await views.usage(ledger, _since(since)) if ledger is not None else None
    except InvalidRequest as exc:
        error = exc.message
    context = {"report": report, "since": since, "periods": PERIODS, "error": error}
    return _page(request, who, "usage.html", "usage", **context)


@router.get("/data/usage", dependencies=NEEDS_LOGIN)
async def usage_data(request: Request, since: Since = "24h") -> Response:
    ledger: Ledger | None = request.app.state.ledger
    if ledger is None:
        return _json({"charts": {}})
    return _json(views.usage_charts(await views.usage(ledger, _since(since))))


# --- Recent requests ------------------------------------------------------------------------


@router.get("/requests")
async def requests_page(request: Request, who: PageViewer) -> Response:
    if who is None:
        return to_login()
    _, _, feed = _state(request)
    return _page(request, who, "requests.html", "requests", records=feed.recent(RECENT_ROWS))


@router.get("/part/requests", dependencies=NEEDS_LOGIN)
async def requests_part(request: Request) -> Response:
    _, _, feed = _state(request)
    return _fragment(request, "_requests.html", records=feed.recent(RECENT_ROWS))
