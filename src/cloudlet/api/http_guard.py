"""Slow and oversized clients, refused at the HTTP protocol: 408 and 431 as nginx sends them.

uvicorn bounds only the idle time between keep-alive requests (``timeout_keep_alive``). With
httptools (its default parser) nothing bounds how long a request's head or body may take to
arrive, nor how large a head may be: 50 connections trickling a header byte at a time
(slowloris) were held 150 s, and a 100 KB header was accepted. Its h11 parser has a head size
limit (``h11_max_incomplete_event_size``) but no read timeouts either, and closes the
connection (a TCP reset) when a response is sent before the request body was read, which is
what a 413 is. An ASGI middleware cannot help: it runs only once the whole head has arrived.

So the server runs httptools through :class:`GuardedHttpProtocol`, uvicorn's protocol plus:

- the head must arrive within ``header_timeout_s`` of the connection opening or of the
  request's first byte (an idle keep-alive connection is uvicorn's ``timeout_keep_alive``),
  else 408 and close;
- the body within ``body_timeout_s`` of the head, else 408 and close (the app's ``receive``
  reports a disconnect, so a handler waiting on the body ends);
- a head over ``max_header_bytes`` gets 431 and close.

The answers are in OpenAI's error envelope, like every other error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from cloudlet.api.errors import error_body
from cloudlet.config.spec import ServerSpec
from cloudlet.errors import CloudletError, HeadersTooLarge, RequestTimeout

#: How long a refused connection's further input is read and dropped before it is closed.
LINGER_S = 2.0


def uvicorn_options(server: ServerSpec) -> dict[str, Any]:
    """The ``uvicorn.Config`` options that bound a connection's reads for ``server``."""
    return {
        "http": guarded_protocol(server),
        "timeout_keep_alive": server.keep_alive_timeout_s,
    }


def guarded_protocol(server: ServerSpec) -> type[GuardedHttpProtocol]:
    """A :class:`GuardedHttpProtocol` class bound to ``server``'s limits (uvicorn builds one
    protocol object per connection from a class)."""
    return type("BoundGuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": server})


class GuardedHttpProtocol(HttpToolsProtocol):
    limits: ServerSpec = ServerSpec()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._due: float | None = None  # when the armed deadline passes (loop time)
        self._due_for: tuple[float, str] = (0.0, "head")  # its length and what it bounds
        self._timer: asyncio.TimerHandle | None = None  # the connection's one timer
        self._in_head = True  # reading a request's head (or waiting for its first byte)
        self._in_body = False
        self._head_bytes = 0
        self._refused = False  # answered 408/431: the rest of what arrives is ignored

    # --- the head ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, "head")

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still in the head after this chunk: all of it counts (a chunk that completed the
        # head, body bytes included, was measured exactly in on_headers_complete).
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(HeadersTooLarge(self._too_large()), answer=True)

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._in_head = True
        if self._due is None:  # a keep-alive connection's next request begins
            self._arm(self.limits.header_timeout_s, "head")

    # on_url and on_header are uvicorn's own: after a refusal, the rest of the chunk being
    # parsed can only add to a head that on_headers_complete then drops (no override: a
    # Python frame per header field adds up).

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.limits.max_header_bytes:
            self._refuse(HeadersTooLarge(self._too_large()), answer=True)
            return
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._in_body = True
            self._arm(self.limits.body_timeout_s, "body")

    def _too_large(self) -> str:
        return (
            f"The request's header fields are larger than the limit of "
            f"{self.limits.max_header_bytes} bytes (server.max_header_bytes in the spec)."
        )

    # --- the body ----------------------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_body = False
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        # Answered before the body was read (a 413): the body deadline still runs, so a
        # client trickling the rest cannot hold the connection.
        if not self._in_body:
            self._disarm()
            self._in_head = True
            self._head_bytes = 0
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    # --- deadlines ---------------------------------------------------------------------------
    # Deadlines are armed and disarmed several times per request. A timer handle made and
    # cancelled each time (with the overrides above) cost 2.8 % of a routed chat request's
    # instructions (benchmarks/count_gateway.py), so arming only notes the deadline, and the
    # connection's one timer, when it fires, checks the deadline that holds by then.

    def _arm(self, seconds: float, part: str) -> None:
        """Set the deadline; the timer moves only when it would fire after it."""
        due = self.loop.time() + seconds
        self._due, self._due_for = due, (seconds, part)
        timer = self._timer
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(due, self._check)

    def _disarm(self) -> None:
        self._due = None

    def _check(self) -> None:
        """The timer fired: the deadline that holds now has passed, lies ahead (the timer
        waits again), or there is none."""
        self._timer = None
        due = self._due
        if due is None:
            return
        if self.loop.time() < due:
            self._timer = self.loop.call_at(due, self._check)
            return
        self._due = None
        self._expired(*self._due_for)

    def _expired(self, seconds: float, part: str) -> None:
        setting = "header_timeout_s" if part == "head" else "body_timeout_s"
        cycle = self.cycle
        exc = RequestTimeout(
            f"The request's {part} did not arrive within {seconds:g}s "
            f"(server.{setting} in the spec)."
        )
        if part == "head":  # no request of this head has a cycle yet
            self._refuse(exc, answer=cycle is None or cycle.response_complete)
        else:  # the body's request is the current cycle: answer unless the app began to
            self._refuse(exc, answer=cycle is not None and not cycle.response_started)

    def _refuse(self, exc: CloudletError, *, answer: bool) -> None:
        """Answer ``exc`` (when nothing else is being answered) and close."""
        self._disarm()
        self._refused = True
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app, if it is waiting for the body, sees a disconnect; its sends are dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if answer:
            body = json.dumps(error_body(exc)).encode()
            head = [
                STATUS_LINE[exc.status],
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
        # Closing with unread input makes the kernel send a reset, which can overtake the
        # answer; so close our side only, and read (and drop) what still comes for a moment,
        # as nginx's lingering close does.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
