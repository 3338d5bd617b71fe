"""Request body checks as a pure ASGI middleware, before any parsing.

Bodies over the limit get 413; bodies with a lone UTF-16 surrogate get 400 (``json.loads``
accepts ``"\\ud800"``, and even the UTF-8-style bytes of one, and the string then fails the
first time anything encodes it: a template, a tokenizer, a log line, the error message that
repeats a model name).
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudlet.api.errors import error_response
from cloudlet.errors import InvalidRequest, PayloadTooLarge

# A surrogate as the 3 bytes UTF-8 would give it (ED A0..BF xx; never valid UTF-8), or as a
# JSON escape.
_UTF8_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
# Every escape in a JSON text; a surrogate pair is one match, so a lone one is found alone.
_ESCAPE = re.compile(
    rb"\\(?:(?P<pair>u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?P<lone>u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
    re.DOTALL,
)


def has_lone_surrogate(body: bytes) -> bool:
    """Whether a JSON text holds a surrogate that is not half of a pair (not valid Unicode)."""
    if _MAYBE_SURROGATE.search(body) is None:
        return False
    if _UTF8_SURROGATE.search(body):
        return True
    return any(match.group("lone") for match in _ESCAPE.finditer(body))


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
        body = b"".join(chunks)
        if has_lone_surrogate(body):
            refused = InvalidRequest(
                "The request body contains a lone UTF-16 surrogate (such as \\ud800) in a "
                "string; JSON text must be valid Unicode."
            )
            await error_response(refused)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = PayloadTooLarge(
            f"Request body is larger than the limit of {self.max_bytes} bytes "
            "(server.max_body_bytes in the spec)."
        )
        await error_response(exc)(scope, receive, send)
