"""The OpenAI wire format as a remote engine speaks it: request bodies out.

Bodies are built from the domain request alone, field by field: nothing a client sent beyond
what :class:`~cloudlet.domain.GenerationRequest` holds can reach an upstream, and the model
name sent is the spec's ``upstream_model``, never the client's. What comes back is read in
:mod:`cloudlet.engines.openai_reply`.
"""

from __future__ import annotations

from typing import Any

from cloudlet.domain import GenerationRequest, SamplingParams

_DEFAULTS = SamplingParams()


#: An SSE comment before a stream's last chunk (every client skips comments): how long the
#: generation waited for its engine, in seconds. A cloudlet gateway in front of a local worker
#: or a cloudlet pod reads it (``openai_reply.StreamParser``) for its queue-time metric.
QUEUED_COMMENT = b": queued_s="


def generation_body(request: GenerationRequest, upstream_model: str) -> dict[str, Any]:
    """The JSON body for ``/chat/completions`` (messages) or ``/completions`` (prompt)."""
    body: dict[str, Any] = {"model": upstream_model, "stream": True}
    body["stream_options"] = {"include_usage": True}
    if request.messages is not None:
        body["messages"] = [m.as_wire_dict() for m in request.messages]
    else:
        body["prompt"] = request.prompt
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.n > 1:
        body["n"] = request.n
    if request.stop:
        body["stop"] = list(request.stop)
    s = request.sampling
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = getattr(s, name)
        if value != getattr(_DEFAULTS, name):
            body[name] = value
    if s.seed is not None:
        body["seed"] = s.seed
    # Not in OpenAI's API, which refuses unknown fields: sent only when asked for.
    if s.top_k != _DEFAULTS.top_k:
        body["top_k"] = s.top_k
    if s.min_p != _DEFAULTS.min_p:
        body["min_p"] = s.min_p
    if s.repeat_penalty != _DEFAULTS.repeat_penalty:
        body["repetition_penalty"] = s.repeat_penalty
    if request.tools:
        body["tools"] = [t.as_wire_dict() for t in request.tools]
        body["tool_choice"] = request.tool_choice.as_wire()
        if not request.parallel_tool_calls:
            body["parallel_tool_calls"] = False
    if request.logprobs and request.messages is None:
        body["logprobs"] = request.top_logprobs  # /completions: how many alternatives
    elif request.logprobs:
        body["logprobs"] = True
        if request.top_logprobs:
            body["top_logprobs"] = request.top_logprobs
    fmt = request.response_format
    if fmt.kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt.kind == "json_schema":
        schema = {"name": "response", "schema": fmt.schema or {}}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    return body
