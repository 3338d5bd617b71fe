"""``x-request-id`` on every response, success and error, and the request's arrival.

Each HTTP request gets an :class:`~cloudlet.gateway.life.Arrival` (in ``scope["state"]``, read
by routes as ``request.state.arrival``): our unique id, which is the ledger row's and the
record's ``request_id``, plus the client's own ``x-request-id`` when it is well-formed. The
response's ``x-request-id`` echoes the client's id when it sent one (a proxy's or a caller's id
stays the same end to end) and is ours otherwise; the ledger keeps both, so either finds the
row (``cloudlet usage --request-id``). An error answered after the router chose a target also
says where (``x-cloudlet-target``, ``x-cloudlet-spilled``), like a success.

A pure ASGI middleware: it only edits the response's start message, so streams pass through
untouched and the cost is one small object per request.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudlet.gateway.life import Arrival, client_request_id


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                sent = value.decode("latin-1")
                break
        arrival = Arrival.now(client_request_id(sent))
        scope.setdefault("state", {})["arrival"] = arrival

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = arrival.public_id
                if arrival.client_id is not None:
                    headers["x-cloudlet-request-id"] = arrival.request_id
                life = arrival.life
                target = life.target if life is not None else None
                if target is not None and "x-cloudlet-target" not in headers:
                    headers["x-cloudlet-target"] = target
                    headers["x-cloudlet-spilled"] = "true" if life and life.spilled else "false"
            await send(message)

        await self.app(scope, receive, send_with_id)
