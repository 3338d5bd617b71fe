"""The engine worker's door: only the gateway that holds the shared token gets in.

An engine worker (``cloudlet worker``) serves one model to one client, the gateway, which
does the authentication, limits and accounting for everyone else. A worker on a private Unix
socket is already out of reach; one on a network port (an engine pod) must not be an open door
past the gateway's keys, so every request carries ``Authorization: Bearer <token>``, the token
shared through ``CLOUDLET_WORKER_TOKEN`` (a Secret in a cluster). Probes and the scrape stay
open: they reveal no model output and carry no secrets.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from cloudlet.api.errors import error_response
from cloudlet.errors import AuthenticationError

_OPEN = frozenset({"/health", "/ready", "/metrics"})


class WorkerToken:
    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("an empty worker token would let anyone in")
        self.app = app
        self._expected = b"Bearer " + token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _OPEN:
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self._expected):
                refused = error_response(
                    AuthenticationError("this engine worker answers only its gateway")
                )
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)
