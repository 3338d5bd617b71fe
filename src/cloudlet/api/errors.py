"""The one place where errors become HTTP responses, in OpenAI's envelope:

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

or, on the Anthropic Messages API's paths (``/v1/messages...``), in Anthropic's:

    {"type": "error", "error": {"type": "invalid_request_error", "message": ...}}

Our own errors carry their status, type and code (see :mod:`cloudlet.errors`); the framework's
(validation, unknown route, wrong method) are mapped here; anything else is a 500 whose details
go to the log, never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudlet.errors import AuthenticationError, CloudletError

log = logging.getLogger(__name__)

_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}


def envelope(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_body(exc: CloudletError) -> dict[str, Any]:
    return envelope(exc.message, exc.type, exc.param, exc.code)


# Anthropic's error types by HTTP status.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def _anthropic(body: dict[str, Any], status: int) -> dict[str, Any]:
    kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": body["error"]["message"]}}


def anthropic_error_body(exc: CloudletError) -> dict[str, Any]:
    return _anthropic(error_body(exc), exc.status)


def _respond(
    request: Request | None,
    body: dict[str, Any],
    status: int,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    if request is not None and request.url.path.startswith("/v1/messages"):
        body = _anthropic(body, status)
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: CloudletError, request: Request | None = None) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return _respond(request, error_body(exc), exc.status, headers)


async def _cloudlet_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CloudletError)
    if isinstance(exc, AuthenticationError):
        failures = getattr(request.app.state, "auth_failures", None)
        if failures is not None:
            failures.record(request)
    return error_response(exc, request)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "invalid request"}
    loc = _common_loc([e["loc"] for e in errors if e["loc"][:2] == first["loc"][:2]])
    param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or None
    if first.get("type") == "json_invalid" or (not loc and first.get("type") != "missing"):
        message = (
            "We could not parse the JSON body of your request: "
            f"{first.get('ctx', {}).get('error', first['msg'])}. "
            "Send a JSON object with Content-Type: application/json."
        )
        param = None
    elif param is None:
        message = f"Invalid request body: {first['msg']}"
    else:
        message = f"Invalid value for '{param}': {first['msg']}"
    others = len({tuple(e["loc"][:2]) for e in errors}) - 1
    if others:
        message += f" (and {others} more problem{'s' if others > 1 else ''})"
    return _respond(request, envelope(message, "invalid_request_error", param), 400)


def _common_loc(locs: list[tuple[int | str, ...]]) -> list[int | str]:
    """The field path shared by all errors of one field: a union's failed branches add their
    type names (``stop.str``, ``stop.list[str]``); the client only needs ``stop``."""
    common = list(locs[0]) if locs else []
    for loc in locs[1:]:
        n = 0
        while n < min(len(common), len(loc)) and common[n] == loc[n]:
            n += 1
        common = common[:n]
    return common[1:] if common and common[0] in ("body", "query", "path", "header") else common


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    type_ = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
    if exc.status_code >= 500:
        type_ = "server_error"
    return _respond(request, envelope(message, type_), exc.status_code, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    message = "The server had an error while processing your request."
    return _respond(request, envelope(message, "server_error"), 500)


class ContainAnsweredErrors:
    """Keeps an error that was already answered from closing the connection.

    Starlette's outermost middleware sends the 500 from :func:`_unexpected` and then raises
    the exception again (for servers and tests to see); uvicorn then closes the connection,
    and a client that reuses it (every HTTP client keeps connections alive) gets a reset on
    its next request. Once a complete response went out, the error is logged and done with;
    an error in the middle of a response still closes the connection (it cannot be resumed).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def tracked(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if not complete:
                raise


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CloudletError, _cloudlet_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for status, description in [
        (400, "Invalid request (bad JSON, invalid field, context length exceeded)"),
        (401, "Missing or wrong API key"),
        (403, "The key may not use this model, or the policy refuses it"),
        (404, "Unknown model"),
        (413, "Request body too large"),
        (503, "Engine overloaded or not ready, or the counters store is down; see Retry-After"),
    ]
}
