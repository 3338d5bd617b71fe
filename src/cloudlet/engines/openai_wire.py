"""The OpenAI wire format as a remote engine speaks it: request bodies out, SSE chunks in.

Bodies are built from the domain request alone, field by field: nothing a client sent beyond
what :class:`~cloudlet.domain.GenerationRequest` holds can reach an upstream, and the model
name sent is the spec's ``upstream_model``, never the client's. Upstream HTTP failures are
translated here into the error tree; messages name the model and replica, never a URL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from cloudlet.domain import (
    Finished,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)
from cloudlet.errors import (
    CloudletError,
    ContextLengthExceeded,
    InvalidRequest,
    UpstreamError,
    UpstreamRateLimited,
)

_DEFAULTS = SamplingParams()
_CHARS_PER_TOKEN = 4  # the usual rule of thumb for English BPE vocabularies
_MESSAGE_OVERHEAD = 4  # role and separators of a chat template, per message


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate, used when an upstream reports no usage and for reservations."""
    return math.ceil(len(text) / _CHARS_PER_TOKEN)


def estimate_prompt_tokens(request: GenerationRequest) -> int:
    if request.messages is None:
        return estimate_tokens(request.prompt or "")
    return sum(estimate_tokens(m.content) + _MESSAGE_OVERHEAD for m in request.messages)


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
    if request.logprobs:
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


def finish_reason(value: object) -> FinishReason:
    if value in ("length", "tool_calls"):
        return value
    return "stop"


def parse_chunk(data: bytes | str, where: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise UpstreamError(f"{where} sent a chunk that is not JSON") from exc
    if not isinstance(chunk, dict):
        raise UpstreamError(f"{where} sent a chunk that is not a JSON object")
    if "error" in chunk:
        raise UpstreamError(f"{where} failed mid-stream: {_message(chunk)}")
    return chunk


def chunk_tool_calls(chunk: Mapping[str, Any]) -> list[ToolCallDelta]:
    """The tool-call pieces of a chat chunk (OpenAI's delta shape)."""
    choices = chunk.get("choices") or ()
    if not choices or not isinstance(choices[0], dict):
        return []
    delta = choices[0].get("delta")
    calls = delta.get("tool_calls") if isinstance(delta, dict) else None
    out: list[ToolCallDelta] = []
    for call in calls if isinstance(calls, list) else ():
        if not isinstance(call, dict):
            continue
        raw = call.get("function")
        function: dict[str, Any] = raw if isinstance(raw, dict) else {}
        arguments = function.get("arguments")
        out.append(
            ToolCallDelta(
                index=int(call.get("index") or 0),
                arguments=arguments if isinstance(arguments, str) else "",
                id=call.get("id") if isinstance(call.get("id"), str) else None,
                name=function.get("name") if isinstance(function.get("name"), str) else None,
            )
        )
    return out


def chunk_logprobs(chunk: Mapping[str, Any]) -> tuple[TokenLogprob, ...]:
    """The token log-probabilities of a chat chunk (``choices[0].logprobs.content``)."""
    choices = chunk.get("choices") or ()
    if not choices or not isinstance(choices[0], dict):
        return ()
    logprobs = choices[0].get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    out: list[TokenLogprob] = []
    for item in content if isinstance(content, list) else ():
        if not isinstance(item, dict):
            continue
        top = tuple(
            (str(t.get("token", "")), float(t.get("logprob", 0.0)))
            for t in item.get("top_logprobs") or ()
            if isinstance(t, dict)
        )
        out.append(TokenLogprob(str(item.get("token", "")), float(item.get("logprob", 0.0)), top))
    return tuple(out)


def chunk_text(chunk: Mapping[str, Any]) -> tuple[str, object]:
    """The text and finish_reason of a chat or completion chunk ('' / None when absent)."""
    choices = chunk.get("choices") or ()
    if not choices or not isinstance(choices[0], dict):
        return "", None
    choice = choices[0]
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return (text if isinstance(text, str) else ""), choice.get("finish_reason")


class StreamParser:
    """Upstream SSE lines → text and tool-call deltas, then one :class:`Finished`.

    Usage comes from the upstream's last chunk (``stream_options.include_usage``); an upstream
    that ignores the option gets its usage counted here: the prompt estimated, one completion
    token per text chunk (servers stream about one token per chunk).
    """

    def __init__(self, where: str, prompt_estimate: int) -> None:
        self._where = where
        self._prompt_estimate = prompt_estimate
        self._reason: FinishReason | None = None
        self._usage: Usage | None = None
        self._deltas = 0
        self.done = False

    def feed(self, line: bytes) -> list[TextDelta | ToolCallDelta]:
        if self.done or not line.startswith(b"data:"):
            return []  # blank lines, comments, event: fields
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return []
        chunk = parse_chunk(data, self._where)
        events: list[TextDelta | ToolCallDelta] = []
        text, finish = chunk_text(chunk)
        if finish is not None:
            self._reason = finish_reason(finish)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        if text:
            events.append(TextDelta(text, chunk_logprobs(chunk)))
        events.extend(chunk_tool_calls(chunk))
        self._deltas += bool(events)
        return events

    def finish(self) -> Finished:
        """The last event; an upstream that closed before ``[DONE]`` or a finish_reason broke
        off, and that is an error, not a short answer."""
        if self._reason is None and not self.done:
            raise UpstreamError(f"{self._where} ended the stream before it was complete")
        usage = self._usage or Usage(self._prompt_estimate, self._deltas)
        return Finished(self._reason or "stop", usage)


def status_error(status: int, body: bytes, headers: Mapping[str, str], where: str) -> CloudletError:
    """The error for an upstream's non-2xx answer; only 4xx caused by the request are the
    client's (400, 413, 422), everything else is the upstream's and may fail over."""
    try:
        parsed: object = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    message = _message(parsed) if isinstance(parsed, dict) else ""
    if status == 429:
        return UpstreamRateLimited(
            f"{where} is rate limited", retry_after=_retry_after(headers.get("retry-after"))
        )
    if status in (400, 413, 422):
        code = parsed.get("error", {}).get("code") if isinstance(parsed, dict) else None
        cls = ContextLengthExceeded if code == "context_length_exceeded" else InvalidRequest
        return cls(f"{where} refused the request: {message or status}")
    if status in (401, 403):
        return UpstreamError(f"{where} refused cloudlet's credentials (HTTP {status})")
    if status == 404:
        return UpstreamError(f"{where} does not serve the configured model (HTTP 404)")
    return UpstreamError(f"{where} failed with HTTP {status}")


def _message(parsed: Mapping[str, Any]) -> str:
    error = parsed.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    return str(error)[:500] if error else ""


def _retry_after(value: str | None) -> int:
    try:
        return max(1, math.ceil(float(value))) if value else 1
    except ValueError:
        return 1
