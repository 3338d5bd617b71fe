"""``x-request-id`` on every response, success and error, and the request's arrival.

Each HTTP request gets an :class:`~cloudlet.gateway.life.Arrival` (in ``scope["state"]``, read
by routes as ``request.state.arrival``): our unique id, which is the ledger row's and the
record's ``request_id``, plus the client's own ``x-request-id`` when it is well-formed. The
response's ``x-request-id`` echoes the client's id when it sent one (a proxy's or a caller's id
stays the same end to end) and is ours otherwise; the ledger keeps both, so either finds the
row (``cloudlet usage --request-id``). An error answered after the router chose a target also
says where (``x-cloudlet-target``, ``x-cloudlet-spilled``), like a success. The client's W3C
``traceparent`` and ``tracestate`` go with the arrival, for the request's span to continue
the client's trace.

A pure ASGI middleware: it only edits the response's start message, so streams pass through
untouched and the cost is one small object per request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudlet.gateway.life import Arrival, client_request_id


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = parent = state = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                sent = value.decode("latin-1")
            elif name == b"traceparent":
                parent = value.decode("latin-1")
            elif name == b"tracestate":
                state = value.decode("latin-1")
        arrival = Arrival.now(client_request_id(sent))
        arrival.traceparent, arrival.tracestate = parent, state
        scope.setdefault("state", {})["arrival"] = arrival

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The raw header list, appended to: no parsing on the hot path.
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", ()))
                headers.append((b"x-request-id", arrival.public_id.encode()))
                if arrival.client_id is not None:
                    headers.append((b"x-cloudlet-request-id", arrival.request_id.encode()))
                life = arrival.life
                if life is not None and life.target is not None:
                    _add_where(headers, life.target, life.spilled)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The life and its arrival point at each other: unlinked once the response is out,
            # they (and what the life holds) are freed at once rather than by the collector,
            # whose collections would otherwise walk every finished request's objects.
            arrival.life = None


def _add_where(headers: list[tuple[bytes, bytes]], target: str, spilled: bool) -> None:
    """Where it ran, unless the route already said so (a success does; an error does not)."""
    if not any(name == b"x-cloudlet-target" for name, _ in headers):
        headers.append((b"x-cloudlet-target", target.encode()))
        headers.append((b"x-cloudlet-spilled", b"true" if spilled else b"false"))
