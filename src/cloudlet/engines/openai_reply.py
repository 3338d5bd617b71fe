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

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic_core import from_json

from cloudlet.domain import (
    EmbeddingResult,
    Finished,
    FinishReason,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from cloudlet.domain.tokens import estimate_tokens
from cloudlet.engines import openai_choice as choice
from cloudlet.engines.openai_wire import QUEUED_COMMENT
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


_malformed = choice.malformed
StreamEvent = TextDelta | ToolCallDelta


def finish_reason(value: object) -> FinishReason:
    if value == "length":
        return "length"
    return "tool_calls" if value == "tool_calls" else "stop"


def parse_json(data: bytes | str, where: str, what: str) -> dict[str, Any]:
    """A JSON object, or the UpstreamError that says it is not one.

    Parsed by pydantic-core's parser (Rust): a third of the standard library's time for a
    stream chunk, and every token of a streamed answer is one chunk. It is stricter than
    ``json.loads`` in one way that matters to nobody: a lone UTF-16 surrogate escape is
    malformed (it could not have been encoded to a client anyway)."""
    try:
        parsed = from_json(data)
    except ValueError as exc:  # invalid UTF-8 and nesting past its recursion limit included
        deep = str(exc).startswith("recursion limit")
        raise _malformed(where, f"{what} is {'nested too deeply' if deep else 'not JSON'}") from exc
    if not isinstance(parsed, dict):
        raise _malformed(where, f"{what} is not a JSON object")
    return parsed


def parse_chunk(data: bytes | str, where: str) -> dict[str, Any]:
    chunk = parse_json(data, where, "a chunk")
    if chunk.get("error"):
        raise UpstreamError(f"{where} failed mid-stream: {_message(chunk) or 'an error'}")
    return chunk


def parse_usage(value: object, where: str) -> Usage | None:
    """``usage`` as sent: absent or null is None; anything but counts is malformed."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _malformed(where, "usage is not an object")
    return Usage(
        _count(value.get("prompt_tokens"), where), _count(value.get("completion_tokens"), where)
    )


def _seconds(raw: bytes) -> float | None:
    """A duration an upstream reported; anything but a finite, non-negative number of
    seconds below a day is ignored (it only feeds a metric)."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0.0 <= value < 86400.0 else None


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

    A request for ``n`` choices reads every choice of every chunk (events tagged with their
    choice); a stop string the upstream says ended choice 0 (``stop_reason``, one of
    ``stops``) becomes ``Finished.stop_sequence``. Usage comes from the upstream's last chunk
    (``stream_options.include_usage``); an upstream that ignores the option gets its usage
    counted here: the prompt estimated, one completion token per text chunk of a choice
    (servers stream about one token per chunk). ``data_lines`` counts the chunks read:
    comments and keep-alives do not count, so a stream of nothing else is silence.
    """

    def __init__(
        self,
        where: str,
        prompt_estimate: int,
        n: int = 1,
        stops: Sequence[str] = (),
        *,
        waited_s: float | None = None,
    ) -> None:
        """``waited_s``: how long the request waited here for a slot of this upstream; a
        cloudlet upstream adds its own engine's queue (see ``openai_wire.QUEUED_COMMENT``)."""
        self._waited_s = waited_s
        self._upstream_queued: float | None = None
        self._where = where
        self._prompt_estimate = prompt_estimate
        self._n = n
        self._stops = stops
        self._reasons: dict[int, FinishReason] = {}
        self._seen: set[int] = set()  # choices that appeared
        self._stop: str | None = None
        self._usage: Usage | None = None
        self._deltas = 0
        self.data_lines = 0
        self.done = False

    def feed(self, line: bytes) -> list[StreamEvent]:
        if self.done or not line.startswith(b"data:"):
            if line.startswith(QUEUED_COMMENT):  # a cloudlet upstream's queue time
                self._upstream_queued = _seconds(line[len(QUEUED_COMMENT) :])
            return []  # blank lines, comments, event: fields
        self.data_lines += 1
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return []
        chunk = parse_chunk(data, self._where)
        if "usage" in chunk:
            self._usage = parse_usage(chunk["usage"], self._where) or self._usage
        return self._read(chunk, streamed=True)

    def feed_body(self, body: bytes) -> list[StreamEvent]:
        """A whole JSON completion sent instead of a stream: its events, and the stream is
        done."""
        parsed = parse_json(body, self._where, "the body")
        if parsed.get("error"):
            raise UpstreamError(f"{self._where} failed: {_message(parsed) or 'an error'}")
        events = self._read(parsed, streamed=False)
        if not self._reasons:
            raise _malformed(self._where, "a completion without choices")
        self._usage = parse_usage(parsed.get("usage"), self._where)
        self.done = True
        return events

    def _read(self, body: Mapping[str, Any], *, streamed: bool) -> list[StreamEvent]:
        where = self._where
        events: list[StreamEvent] = []
        for index, item in choice.choices(body, where, self._n):
            self._seen.add(index)
            text, finish = choice.text(item, where)
            if finish is not None or not streamed:
                self._reasons[index] = finish_reason(finish)
                if index == 0:
                    self._stop = choice.stop_sequence(item, self._stops)
            logprobs = choice.logprobs(item, where)
            calls = choice.tool_calls(item, where, streamed=streamed)
            mine: list[StreamEvent] = []
            if text or logprobs:
                mine.append(TextDelta(text, logprobs, index))
            mine.extend(replace(c, choice=index) if index else c for c in calls)
            self._deltas += bool(mine)
            events.extend(mine)
        return events

    def finish(self) -> Finished:
        """The last event; an upstream that closed before ``[DONE]`` or every choice's
        finish_reason broke off, and that is an error, not a short answer."""
        if len(self._reasons) < self._n and not self.done:
            raise UpstreamError(f"{self._where} ended the stream before it was complete")
        if self._n > 1 and len(self._seen) < self._n:  # it ignored n: never a silent loss
            raise UpstreamError(
                f"{self._where} answered {len(self._seen)} of the {self._n} choices asked for "
                "(it may not support n)"
            )
        usage = self._usage or Usage(self._prompt_estimate, self._deltas)
        reasons = tuple(self._reasons.get(i, "stop") for i in range(self._n))
        queued = self._waited_s
        if self._upstream_queued is not None:
            queued = (queued or 0.0) + self._upstream_queued
        return Finished(reasons[0], usage, reasons if self._n > 1 else (), self._stop, queued)


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
        parsed: object = from_json(body) if body else {}
    except ValueError:
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
