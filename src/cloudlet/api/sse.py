"""Server-sent events framing, and the error event sent when a stream fails after it began."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel

from cloudlet.api.errors import envelope, error_body
from cloudlet.domain import Finished, GenerationEvent, TextDelta, ToolCallDelta
from cloudlet.engines.openai_wire import QUEUED_COMMENT
from cloudlet.errors import CloudletError

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
EVENT_SCHEMA = {
    "type": "object",
    "description": "One server-sent event: `data` is a JSON chunk object, an error envelope, "
    "or `[DONE]` at the end",
    "properties": {"data": {"type": "string"}},
    "required": ["data"],
}
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def stream_response(kind: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI for a 200 that is JSON, or with ``stream: true`` server-sent events."""
    return {
        200: {
            "description": f"The response, or with `stream: true` server-sent events of {kind} "
            "objects ending with `data: [DONE]`",
            "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
        }
    }


def frame(payload: BaseModel) -> bytes:
    return b"data: " + payload.model_dump_json(exclude_none=False).encode() + b"\n\n"


async def stream_events(
    events: AsyncGenerator[GenerationEvent, None],
    on_text: Callable[[TextDelta], BaseModel],
    on_finish: Callable[[Finished], list[BaseModel]],
    first: list[BaseModel] | None = None,
    on_tool: Callable[[ToolCallDelta], BaseModel] | None = None,
) -> AsyncIterator[bytes]:
    """Frame an engine's events as SSE; an error after the first byte becomes an error event.

    Leaving early (the client disconnected, so the server cancels this generator) closes the
    engine's stream, which stops generation.
    """
    try:
        for payload in first or []:
            yield frame(payload)
        async for event in events:
            if isinstance(event, Finished):
                if event.queued_s is not None:  # for a cloudlet gateway in front
                    yield QUEUED_COMMENT + b"%.6f\n\n" % event.queued_s
                for payload in on_finish(event):
                    yield frame(payload)
                yield DONE
                return
            if isinstance(event, TextDelta):
                yield frame(on_text(event))
            elif on_tool is not None:
                yield frame(on_tool(event))
    except CloudletError as exc:
        yield b"data: " + json.dumps(error_body(exc)).encode() + b"\n\n"
    except Exception:
        log.exception("stream failed")
        body = envelope("The server had an error while streaming the response.", "server_error")
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
    finally:
        await events.aclose()
