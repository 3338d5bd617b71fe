"""Jinja2 templates for the dashboard, their filters, and the headers every page carries.

Pages run no inline script and no inline style: the Content-Security-Policy allows scripts,
styles and fetches from this server only, so injected markup could not run. htmx is told
(through its ``htmx-config`` meta tag) not to add its own inline styles nor evaluate code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from cloudlet.ledger.reports import decimal_str

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make Chromium send "Origin: null"
    "cache-control": "no-store",
}


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f} ms"


def _money(amount: Decimal | None) -> str:
    return "—" if amount is None else decimal_str(amount)


def _rate(value: float) -> str:
    return f"{value:.2f}"


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.0f} %"


def _time(value: datetime | float) -> str:
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%H:%M:%S")


def _date(value: datetime | None) -> str:
    return "the start" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters.update(ms=_ms, money=_money, rate=_rate, pct=_pct, hms=_time, date=_date)


def page(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """Render a template with the security headers."""
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response
