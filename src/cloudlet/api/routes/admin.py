"""The admin API, guarded by the admin key: API keys and usage reports."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.deps import bearer
from cloudlet.errors import InvalidRequest, KeyNotFound, LedgerOff, RequestNotFound
from cloudlet.gateway.tenancy import Tenancy
from cloudlet.ledger.keys import Tenant
from cloudlet.ledger.reports import parse_since
from cloudlet.ledger.store import Ledger
from cloudlet.pricing import MAX_AMOUNT, Money, parse_amount


async def _admin(request: Request) -> Tenant:
    tenant: Tenant = await _tenancy(request).resolve_admin(await bearer(request))
    return tenant


def _tenancy(request: Request) -> Tenancy:
    tenancy: Tenancy = request.app.state.pipeline.tenancy  # create_app always sets one
    return tenancy


def _ledger(request: Request) -> Ledger:
    """The ledger; without one (``storage.ledger: off``) the admin key still authenticates
    here, and these endpoints say why they have nothing to manage."""
    ledger: Ledger | None = request.app.state.ledger
    if ledger is None:
        raise LedgerOff(
            "This server runs without a ledger (storage.ledger: off): there are no API keys "
            "or usage to manage. The admin key authenticates API requests."
        )
    return ledger


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(_admin)],
    responses={400: ERROR_RESPONSES[400], 401: ERROR_RESPONSES[401], 403: ERROR_RESPONSES[403]},
)
LedgerDep = Annotated[Ledger, Depends(_ledger)]


#: Printable text: control characters (NUL above all, which PostgreSQL refuses) are not names.
_NAME = r"^[^\x00-\x1f\x7f]+$"
_INT32 = 2**31 - 1  # the ledger's integer columns


def _printable(value: str) -> str:
    """The ledger's rule (str.isprintable): the pattern alone lets C1 controls, format and
    private-use characters through, which the key store then refuses."""
    if not value.isprintable():
        raise ValueError("must be printable text (no control or format characters)")
    return value


Name = Annotated[
    str, Field(min_length=1, max_length=128, pattern=_NAME), AfterValidator(_printable)
]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    team: Name
    models: Annotated[list[Name], Field(max_length=1000)] | None = None
    rpm: int | None = Field(None, ge=1, le=_INT32)
    tpm: int | None = Field(None, ge=1, le=_INT32)
    budget: str | None = Field(
        None,
        max_length=64,
        description=f'amount as a decimal string, e.g. "20.00" (0 to {MAX_AMOUNT})',
    )
    currency: str | None = Field(
        None, pattern="^[A-Z]{3}$", description="the deployment's currency (the default)"
    )
    period: Literal["day", "month"] = "month"


@router.post("/keys", status_code=201, summary="Create an API key (shown once)")
async def create_key(body: KeyCreate, request: Request, ledger: LedgerDep) -> dict[str, Any]:
    deployment: str = request.app.state.spec.currency
    if body.currency is not None and body.currency != deployment:
        raise InvalidRequest(
            f"currency must be {deployment}, the currency this deployment bills in "
            "(amounts are never converted)",
            param="currency",
        )
    budget = None
    if body.budget is not None:
        try:
            budget = Money(parse_amount(body.budget), deployment)
        except ValueError as exc:
            raise InvalidRequest(f"budget: {exc}", param="budget") from None
    created = await ledger.keys.create(
        body.team, models=body.models, rpm=body.rpm, tpm=body.tpm, budget=budget, period=body.period
    )
    return {**created.record.as_json(), "key": created.key}


@router.get("/keys", summary="List API keys (never the keys themselves)")
async def list_keys(
    ledger: LedgerDep, include_revoked: bool = False
) -> dict[str, list[dict[str, Any]]]:
    records = await ledger.keys.list(include_revoked=include_revoked)
    return {"data": [r.as_json() for r in records]}


@router.delete(
    "/keys/{key_id}",
    responses={404: {**ERROR_RESPONSES[404], "description": "No active key with this id"}},
    summary="Revoke an API key",
)
async def revoke_key(key_id: str, ledger: LedgerDep) -> dict[str, Any]:
    if not await ledger.keys.revoke(key_id):
        raise KeyNotFound(f"no active API key {key_id!r}", param="key_id")
    return {"id": key_id, "revoked": True}


@router.get(
    "/usage",
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    summary="Usage and cost, grouped (JSON) or per request (CSV)",
)
async def usage(
    ledger: LedgerDep,
    since: Annotated[str | None, Query(description="7d, 24h, 30m or an ISO date")] = None,
    by: Literal["team", "model", "target", "key"] = "team",
    format: Literal["json", "csv"] = "json",
) -> Any:
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="since") from exc
    if format == "csv":
        out = io.StringIO()
        await ledger.write_csv(out, since=start)
        return PlainTextResponse(out.getvalue(), media_type="text/csv")
    return {
        "object": "list",
        "data": [g.as_json() for g in await ledger.report(by=by, since=start)],
    }


@router.get(
    "/requests/{request_id}",
    responses={404: {**ERROR_RESPONSES[404], "description": "No ledger row has this id"}},
    summary="A request's ledger row, by its x-request-id",
)
async def request_row(request_id: str, ledger: LedgerDep) -> dict[str, Any]:
    """The row of the request whose response carried ``x-request-id: request_id`` (the
    client's own id finds every request that sent it). 404 when there is none: a row is
    written within the ledger's flush interval of the request's end."""
    rows = await ledger.request_rows(request_id)
    if not rows:
        raise RequestNotFound(f"no ledger row for request {request_id!r}", param="request_id")
    return {"object": "list", "data": rows}
