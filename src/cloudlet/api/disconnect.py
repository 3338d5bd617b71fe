"""A client that leaves cancels its request, streaming or not.

uvicorn does not cancel a handler when its client disconnects: a non-streaming chat request
whose client gave up kept its slot until ``max_tokens`` were generated (99 s for 3000) and was
billed as ``ok``. Starlette's streaming response notices only when a send fails, which for a
request still queued for a slot is never. So the generation endpoints run under
:class:`CancelOnDisconnect`: once the body is read, a watcher waits on the connection, and a
disconnect before the response is complete cancels the handler's task. The cancellation
travels the normal way: the engine's stream is closed (the sequence stops, the upstream
connection is closed), and the ledger row says ``cancelled``.

The watcher starts :data:`WATCH_AFTER_S` after the body was read, not at once: a watcher task
made, started and cancelled for every request cost 2.6 % of a routed chat request's
instructions (benchmarks/count_gateway.py), and most answers are complete before it would
have started. A client gone earlier is still seen, as soon as the watcher starts (the server
remembers a disconnect): its request is cancelled at most that much later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_DISCONNECT: Message = {"type": "http.disconnect"}

#: How long after its body a request runs before a watcher waits on its connection.
WATCH_AFTER_S = 0.05


class CancelOnDisconnect:
    """Cancels the handler of a request to one of ``paths`` when its client disconnects.

    Sits inside :class:`~cloudlet.api.limits.BodyLimit`, which hands over the whole body in
    one message: every later ``receive`` can only report the disconnect.
    """

    def __init__(self, app: ASGIApp, paths: Collection[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        first = await receive()
        if first["type"] != "http.request":
            return  # gone before its body arrived
        handler = asyncio.current_task()
        assert handler is not None
        gone = asyncio.Event()
        answered = False
        pending: list[Message] = [first]
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            # uvicorn also reports a disconnect once the response is complete: not a leaver.
            if not answered:
                gone.set()
                handler.cancel()

        async def app_receive() -> Message:
            if pending:
                return pending.pop()
            await gone.wait()
            return _DISCONNECT

        async def app_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        def start() -> None:
            nonlocal watcher
            if not answered:
                watcher = asyncio.create_task(watch(), name="watch-disconnect")

        later = asyncio.get_running_loop().call_later(WATCH_AFTER_S, start)
        try:
            await self.app(scope, app_receive, app_send)
        except asyncio.CancelledError:
            if not gone.is_set():
                raise  # cancelled from outside (shutdown): not ours to swallow
            handler.uncancel()
            log.info(
                "%s %s: the client left; its request was cancelled", scope["method"], scope["path"]
            )
        finally:
            later.cancel()
            if watcher is not None:  # not awaited: no await here, so no cancellation lands
                watcher.cancel()
