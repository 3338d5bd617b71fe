"""Request body limit as a pure ASGI middleware: bodies over the limit get 413 before parsing."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudlet.api.errors import error_response
from cloudlet.errors import PayloadTooLarge


class BodyLimit:
    """Reads the body (at most ``max_bytes``) before the app sees it.

    A declared Content-Length over the limit is refused at once; a chunked body is counted as it
    arrives. The app then receives the buffered body in one message, so FastAPI's own parsing is
    unchanged and later ``receive`` calls still report a client's disconnect.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = PayloadTooLarge(
            f"Request body is larger than the limit of {self.max_bytes} bytes "
            "(server.max_body_bytes in the spec)."
        )
        await error_response(exc)(scope, receive, send)
