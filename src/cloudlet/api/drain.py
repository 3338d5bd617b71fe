"""Graceful drain: after SIGTERM, finish what is in flight and refuse what is new.

Kubernetes (and a developer's Ctrl+C) stop a server while streams are running. Instead of
cutting them (KServe #5485, vLLM #15313), the server turns not-ready, answers new requests with
503 + Retry-After so clients and load balancers go elsewhere, waits for in-flight requests up
to ``server.drain_timeout_s``, and then exits 0. The state lives on the app; the serve command
flips it from its signal handler.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudlet.api.errors import error_response
from cloudlet.errors import EngineUnavailable

_ALWAYS_OPEN = ("/health", "/ready", "/metrics")
_NO_BODY = ("GET", "HEAD", "OPTIONS", "DELETE")


@dataclass
class DrainState:
    draining: bool = False
    in_flight: int = 0
    since: float | None = None

    def begin(self) -> None:
        if not self.draining:
            self.draining = True
            self.since = time.monotonic()

    def done(self, timeout_s: float) -> bool:
        """Nothing left in flight, or the grace period is over."""
        if not self.draining or self.since is None:
            return False
        return self.in_flight == 0 or time.monotonic() - self.since >= timeout_s


class DrainGuard:
    """Counts requests in flight; while draining, refuses new ones with 503."""

    def __init__(self, app: ASGIApp, state: DrainState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _ALWAYS_OPEN:
            await self.app(scope, receive, send)
            return
        if self.state.draining:
            refused = error_response(
                EngineUnavailable("the server is shutting down; retry", retry_after=1)
            )
            refused.headers["Connection"] = "close"
            await refused(scope, receive, send)
            return
        # A request waiting for its client to send the body has nothing in flight to finish,
        # and must not hold the drain (a stalled body is bounded by server.body_timeout_s and,
        # at shutdown, by uvicorn's graceful timeout): it does not count while it waits.
        self.state.in_flight += 1
        body_done = scope["method"] in _NO_BODY

        async def counting_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            self.state.in_flight -= 1
            try:
                message = await receive()
            finally:
                self.state.in_flight += 1
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        try:
            await self.app(scope, counting_receive, send)
        finally:
            self.state.in_flight -= 1
