"""Reading an upstream's replies: the one place where what a server sent becomes domain events.

Everything an OpenAI-compatible server can answer goes through here: an error status (whatever
its body), an SSE stream, a plain JSON completion (some servers answer ``"stream": true``
with one), an embeddings list. Nothing is trusted: every field is checked for its type and
range before use, and anything malformed, whatever its shape (``{"error": "text"}``,
``{"choices": 5}``, ``"prompt_tokens": "abc"`` or ``-3``, a line without end), is an
:class:`~cloudlet.errors.UpstreamError`: a 502 that counts against the replica's circuit
breaker and fails over when it comes before the first token. Messages name the model and
replica (``where``), never a URL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from cloudlet.domain import (
    EmbeddingResult,
    Finished,
    FinishReason,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)
from cloudlet.domain.tokens import estimate_tokens
from cloudlet.errors import (
    CloudletError,
    ContextLengthExceeded,
    EngineOverloaded,
    InvalidRequest,
    UpstreamError,
    UpstreamRateLimited,
)

MAX_LINE_BYTES = 8 << 20  # one SSE line (a chunk); an upstream that never ends one is broken
MAX_BODY_BYTES = 64 << 20  # one JSON body (a completion, embeddings, an error)
_MAX_TOKENS = 1 << 31  # a token count above this is not a count (and would price absurdly)


def _malformed(where: str, what: str) -> UpstreamError:
    return UpstreamError(f"{where} sent a malformed reply ({what})")


_MAX_TOOL_CALLS = 1024  # a tool-call index above this is not an index
StreamEvent = TextDelta | ToolCallDelta


def finish_reason(value: object) -> FinishReason:
    if value == "length":
        return "length"
    return "tool_calls" if value == "tool_calls" else "stop"


def parse_json(data: bytes | str, where: str, what: str) -> dict[str, Any]:
    """A JSON object, or the UpstreamError that says it is not one."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:  # UnicodeDecodeError included
        raise _malformed(where, f"{what} is not JSON") from exc
    except RecursionError as exc:
        raise _malformed(where, f"{what} is nested too deeply") from exc
    if not isinstance(parsed, dict):
        raise _malformed(where, f"{what} is not a JSON object")
    return parsed


def parse_chunk(data: bytes | str, where: str) -> dict[str, Any]:
    chunk = parse_json(data, where, "a chunk")
    if chunk.get("error"):
        raise UpstreamError(f"{where} failed mid-stream: {_message(chunk) or 'an error'}")
    return chunk


def chunk_text(chunk: Mapping[str, Any], where: str) -> tuple[str, object]:
    """The text and finish_reason of a chat or completion chunk ('' / None when absent)."""
    choice = _first_choice(chunk, where)
    if choice is None:
        return "", None
    delta = choice.get("delta")
    if delta is not None:
        if not isinstance(delta, dict):
            raise _malformed(where, "a delta is not an object")
        text = delta.get("content")
    else:
        text = choice.get("text")
    return _text(text, where), _finish(choice, where)


def completion_text(body: Mapping[str, Any], where: str) -> tuple[str, object]:
    """The text and finish_reason of a whole (non-streamed) chat or text completion."""
    choice = _first_choice(body, where)
    if choice is None:
        raise _malformed(where, "a completion without choices")
    message = choice.get("message")
    if message is not None:
        if not isinstance(message, dict):
            raise _malformed(where, "a message is not an object")
        text = message.get("content")
    else:
        text = choice.get("text")
    return _text(text, where), _finish(choice, where)


def _first_choice(body: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    choices = body.get("choices")
    if choices is None:
        return None
    if not isinstance(choices, list):
        raise _malformed(where, "choices is not a list")
    if not choices:
        return None
    choice = choices[0]
    if not isinstance(choice, dict):
        raise _malformed(where, "a choice is not an object")
    return choice


def _text(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _malformed(where, "content is not a string")
    return value


def _finish(choice: Mapping[str, Any], where: str) -> object:
    reason = choice.get("finish_reason")
    if reason is not None and not isinstance(reason, str):
        raise _malformed(where, "finish_reason is not a string")
    return reason


def chunk_tool_calls(chunk: Mapping[str, Any], where: str) -> list[ToolCallDelta]:
    """The tool-call pieces of a chat chunk (OpenAI's delta shape)."""
    choice = _first_choice(chunk, where)
    delta = choice.get("delta") if choice is not None else None
    if not isinstance(delta, dict):
        return []
    return _tool_calls(delta.get("tool_calls"), where, streamed=True)


def message_tool_calls(body: Mapping[str, Any], where: str) -> list[ToolCallDelta]:
    """The tool calls of a whole (non-streamed) chat completion, one delta each."""
    choice = _first_choice(body, where)
    message = choice.get("message") if choice is not None else None
    if not isinstance(message, dict):
        return []
    return _tool_calls(message.get("tool_calls"), where, streamed=False)


def _tool_calls(calls: object, where: str, *, streamed: bool) -> list[ToolCallDelta]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise _malformed(where, "tool_calls is not a list")
    out: list[ToolCallDelta] = []
    for position, call in enumerate(calls):
        if not isinstance(call, dict):
            raise _malformed(where, "a tool call is not an object")
        index = call.get("index", None if streamed else position)
        if isinstance(index, bool) or not isinstance(index, int):
            raise _malformed(where, "a tool call's index is not a number")
        if not 0 <= index < _MAX_TOOL_CALLS:
            raise _malformed(where, "a tool call's index is out of range")
        function = call.get("function")
        if function is None:
            function = {}
        if not isinstance(function, dict):
            raise _malformed(where, "a tool call's function is not an object")
        out.append(
            ToolCallDelta(
                index=index,
                arguments=_optional_str(function.get("arguments"), where, "arguments") or "",
                id=_optional_str(call.get("id"), where, "a tool call id"),
                name=_optional_str(function.get("name"), where, "a tool name"),
            )
        )
    return out


def _optional_str(value: object, where: str, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _malformed(where, f"{what} is not a string")
    return value


def chunk_logprobs(chunk: Mapping[str, Any], where: str) -> tuple[TokenLogprob, ...]:
    """The token log-probabilities of a chunk or completion (``choices[0].logprobs.content``)."""
    choice = _first_choice(chunk, where)
    logprobs = choice.get("logprobs") if choice is not None else None
    if logprobs is None:
        return ()
    if not isinstance(logprobs, dict):
        raise _malformed(where, "logprobs is not an object")
    if "tokens" in logprobs:
        return _legacy_logprobs(logprobs, where)
    content = logprobs.get("content")
    if content is None:
        return ()
    if not isinstance(content, list):
        raise _malformed(where, "logprobs.content is not a list")
    out: list[TokenLogprob] = []
    for item in content:
        if not isinstance(item, dict):
            raise _malformed(where, "a token logprob is not an object")
        top = item.get("top_logprobs")
        if top is None:
            top = []
        if not isinstance(top, list) or not all(isinstance(t, dict) for t in top):
            raise _malformed(where, "top_logprobs is not a list of objects")
        alternatives = tuple((_token(t, where), _logprob(t, where)) for t in top)
        out.append(TokenLogprob(_token(item, where), _logprob(item, where), alternatives))
    return tuple(out)


def _legacy_logprobs(logprobs: Mapping[str, Any], where: str) -> tuple[TokenLogprob, ...]:
    """``/completions``' shape: parallel lists of tokens, logprobs and {token: logprob}."""
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    tops = logprobs.get("top_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        raise _malformed(where, "logprobs.tokens or token_logprobs is not a list")
    if tops is None:
        tops = [None] * len(tokens)
    if not isinstance(tops, list) or not len(tokens) == len(values) == len(tops):
        raise _malformed(where, "logprobs' lists differ in length")
    out: list[TokenLogprob] = []
    for token, value, top in zip(tokens, values, tops, strict=True):
        if top is None:
            top = {}
        if not isinstance(top, dict):
            raise _malformed(where, "a top_logprobs entry is not an object")
        alternatives = tuple(
            (_token({"token": t}, where), _logprob({"logprob": v}, where)) for t, v in top.items()
        )
        entry = {"token": token, "logprob": value}
        out.append(TokenLogprob(_token(entry, where), _logprob(entry, where), alternatives))
    return tuple(out)


def _token(item: Mapping[str, Any], where: str) -> str:
    token = item.get("token")
    if not isinstance(token, str):
        raise _malformed(where, "a logprob's token is not a string")
    return token


def _logprob(item: Mapping[str, Any], where: str) -> float:
    value = item.get("logprob")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _malformed(where, "a logprob is not a number")
    if math.isnan(value) or value > 0:
        raise _malformed(where, "a logprob is not a log-probability")
    return float(value)


def parse_usage(value: object, where: str) -> Usage | None:
    """``usage`` as sent: absent or null is None; anything but counts is malformed."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _malformed(where, "usage is not an object")
    return Usage(
        _count(value.get("prompt_tokens"), where), _count(value.get("completion_tokens"), where)
    )


def _count(value: object, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_TOKENS:
        raise _malformed(where, "a token count is not a count")
    return value


class StreamParser:
    """Upstream SSE lines → text and tool-call deltas, then one :class:`Finished`.

    Usage comes from the upstream's last chunk (``stream_options.include_usage``); an upstream
    that ignores the option gets its usage counted here: the prompt estimated, one completion
    token per text chunk (servers stream about one token per chunk). ``data_lines`` counts the
    chunks read: comments and keep-alives do not count, so a stream of nothing else is silence.
    """

    def __init__(self, where: str, prompt_estimate: int) -> None:
        self._where = where
        self._prompt_estimate = prompt_estimate
        self._reason: FinishReason | None = None
        self._usage: Usage | None = None
        self._deltas = 0
        self.data_lines = 0
        self.done = False

    def feed(self, line: bytes) -> list[StreamEvent]:
        if self.done or not line.startswith(b"data:"):
            return []  # blank lines, comments, event: fields
        self.data_lines += 1
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return []
        chunk = parse_chunk(data, self._where)
        text, finish = chunk_text(chunk, self._where)
        if finish is not None:
            self._reason = finish_reason(finish)
        if "usage" in chunk:
            self._usage = parse_usage(chunk["usage"], self._where) or self._usage
        return self._events(
            text, chunk_logprobs(chunk, self._where), chunk_tool_calls(chunk, self._where)
        )

    def feed_body(self, body: bytes) -> list[StreamEvent]:
        """A whole JSON completion sent instead of a stream: its events, and the stream is
        done."""
        parsed = parse_json(body, self._where, "the body")
        if parsed.get("error"):
            raise UpstreamError(f"{self._where} failed: {_message(parsed) or 'an error'}")
        text, finish = completion_text(parsed, self._where)
        self._reason = finish_reason(finish)
        self._usage = parse_usage(parsed.get("usage"), self._where)
        self.done = True
        logprobs = chunk_logprobs(parsed, self._where)
        return self._events(text, logprobs, message_tool_calls(parsed, self._where))

    def _events(
        self, text: str, logprobs: tuple[TokenLogprob, ...], calls: list[ToolCallDelta]
    ) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if text or logprobs:
            events.append(TextDelta(text, logprobs))
        events.extend(calls)
        self._deltas += bool(events)
        return events

    def finish(self) -> Finished:
        """The last event; an upstream that closed before ``[DONE]`` or a finish_reason broke
        off, and that is an error, not a short answer."""
        if self._reason is None and not self.done:
            raise UpstreamError(f"{self._where} ended the stream before it was complete")
        usage = self._usage or Usage(self._prompt_estimate, self._deltas)
        return Finished(self._reason or "stop", usage)


def embeddings(body: bytes, texts: Sequence[str], where: str) -> EmbeddingResult:
    """An embeddings answer: one vector of numbers per input, all of one length."""
    payload = parse_json(body, where, "the body")
    rows = payload.get("data")
    if not isinstance(rows, list) or len(rows) != len(texts):
        raise _malformed(where, f"not {len(texts)} embeddings")
    vectors: list[list[float] | None] = [None] * len(rows)
    for position, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _malformed(where, "an embedding row is not an object")
        index = row.get("index", position)
        vector = row.get("embedding")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(rows):
            raise _malformed(where, "an embedding's index is out of range")
        if vectors[index] is not None or not isinstance(vector, list) or not vector:
            raise _malformed(where, "an embedding is missing or repeated")
        if not all(type(x) in (float, int) and math.isfinite(x) for x in vector):
            raise _malformed(where, "an embedding holds something else than numbers")
        vectors[index] = [float(x) for x in vector]
    done = [v for v in vectors if v is not None]
    if len({len(v) for v in done}) > 1:
        raise _malformed(where, "embeddings of different lengths")
    usage = parse_usage(payload.get("usage"), where)
    tokens = usage.prompt_tokens if usage is not None and usage.prompt_tokens else 0
    return EmbeddingResult(
        vectors=done, prompt_tokens=tokens or sum(estimate_tokens(t) for t in texts)
    )


def status_error(status: int, body: bytes, headers: Mapping[str, str], where: str) -> CloudletError:
    """The error for an upstream's non-2xx answer; only 4xx caused by the request are the
    client's (400, 413, 422), everything else is the upstream's and may fail over."""
    try:
        parsed: object = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        parsed = {}
    message = _message(parsed) if isinstance(parsed, dict) else ""
    if status == 429:
        return UpstreamRateLimited(
            f"{where} is rate limited", retry_after=_retry_after(headers.get("retry-after"))
        )
    if status in (400, 413, 422):
        error = parsed.get("error") if isinstance(parsed, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        cls = ContextLengthExceeded if code == "context_length_exceeded" else InvalidRequest
        return cls(f"{where} refused the request: {message or status}")
    if status == 503 and _code(parsed) == "engine_overloaded":  # a cloudlet worker's full queue
        retry_after = _retry_after(headers.get("retry-after"))
        return EngineOverloaded(f"{where} is overloaded: {message}", retry_after=retry_after)
    if status in (401, 403):
        return UpstreamError(f"{where} refused cloudlet's credentials (HTTP {status})")
    if status == 404:
        return UpstreamError(f"{where} does not serve the configured model (HTTP 404)")
    return UpstreamError(f"{where} failed with HTTP {status}")


def _code(parsed: object) -> object:
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _message(parsed: Mapping[str, Any]) -> str:
    """The error's message: ``{"error": {"message": ...}}`` (OpenAI), ``{"error": "..."}``
    (TGI), or nothing."""
    error = parsed.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    return error[:500] if isinstance(error, str) else ""


def _retry_after(value: str | None) -> int:
    try:
        seconds = float(value) if value else 1.0
    except ValueError:
        return 1
    return max(1, min(3600, math.ceil(seconds))) if math.isfinite(seconds) else 1
