"""The ASGI layer: routes, wire schemas, SSE framing and the one error handler."""

from cloudlet.api.app import create_app

__all__ = ["create_app"]
