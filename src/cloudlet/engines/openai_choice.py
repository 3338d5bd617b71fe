"""The choices of an upstream's chunk or completion, field by field (see openai_reply).

A request for ``n`` choices gets chunks whose ``choices`` carry an ``index`` each; every
field is checked for its type and range before use, and anything malformed is an
:class:`~cloudlet.errors.UpstreamError` that names the model and replica (``where``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cloudlet.domain import TokenLogprob, ToolCallDelta
from cloudlet.errors import UpstreamError

_MAX_TOOL_CALLS = 1024  # a tool-call index above this is not an index


def malformed(where: str, what: str) -> UpstreamError:
    return UpstreamError(f"{where} sent a malformed reply ({what})")


def choices(body: Mapping[str, Any], where: str, n: int) -> list[tuple[int, dict[str, Any]]]:
    """``(index, choice)`` for each choice of ``body``; an index outside the ``n`` asked for
    (or twice in one chunk) is malformed. A choice without an index is at its position."""
    listed = body.get("choices")
    if listed is None:
        return []
    if not isinstance(listed, list):
        raise malformed(where, "choices is not a list")
    out: list[tuple[int, dict[str, Any]]] = []
    for position, choice in enumerate(listed):
        if not isinstance(choice, dict):
            raise malformed(where, "a choice is not an object")
        index = choice.get("index", position)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise malformed(where, f"a choice's index is not one of the {n} asked for")
        if any(seen == index for seen, _ in out):
            raise malformed(where, "a choice appears twice in one chunk")
        out.append((index, choice))
    return out


def text(choice: Mapping[str, Any], where: str) -> tuple[str, object]:
    """The text and finish_reason of a chunk's or a completion's choice ('' / None when
    absent): ``delta.content`` (chat chunk), ``message.content`` (chat completion) or
    ``text`` (text completion)."""
    value: object = choice.get("text")
    for holder in ("delta", "message"):
        part = choice.get(holder)
        if part is not None:
            if not isinstance(part, dict):
                raise malformed(where, f"a {holder} is not an object")
            value = part.get("content")
            break
    if value is not None and not isinstance(value, str):
        raise malformed(where, "content is not a string")
    reason = choice.get("finish_reason")
    if reason is not None and not isinstance(reason, str):
        raise malformed(where, "finish_reason is not a string")
    return value or "", reason


def stop_sequence(choice: Mapping[str, Any], stops: Sequence[str]) -> str | None:
    """The stop string that ended the choice, where the upstream says (vLLM's and cloudlet's
    ``stop_reason``) and it is one the request gave; anything else is not trusted."""
    value = choice.get("stop_reason")
    return value if isinstance(value, str) and value in stops else None


def tool_calls(choice: Mapping[str, Any], where: str, *, streamed: bool) -> list[ToolCallDelta]:
    """The tool-call pieces of a chat chunk's choice (OpenAI's delta shape), or the calls of
    a whole chat completion's choice, one delta each."""
    holder = choice.get("delta" if streamed else "message")
    if not isinstance(holder, dict):
        return []
    calls = holder.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise malformed(where, "tool_calls is not a list")
    out: list[ToolCallDelta] = []
    for position, call in enumerate(calls):
        if not isinstance(call, dict):
            raise malformed(where, "a tool call is not an object")
        index = call.get("index", None if streamed else position)
        if isinstance(index, bool) or not isinstance(index, int):
            raise malformed(where, "a tool call's index is not a number")
        if not 0 <= index < _MAX_TOOL_CALLS:
            raise malformed(where, "a tool call's index is out of range")
        function = call.get("function")
        if function is None:
            function = {}
        if not isinstance(function, dict):
            raise malformed(where, "a tool call's function is not an object")
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
        raise malformed(where, f"{what} is not a string")
    return value


def logprobs(choice: Mapping[str, Any], where: str) -> tuple[TokenLogprob, ...]:
    """The token log-probabilities of a choice (``logprobs.content``, or the legacy
    completions shape)."""
    value = choice.get("logprobs")
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise malformed(where, "logprobs is not an object")
    if "tokens" in value:
        return _legacy_logprobs(value, where)
    content = value.get("content")
    if content is None:
        return ()
    if not isinstance(content, list):
        raise malformed(where, "logprobs.content is not a list")
    out: list[TokenLogprob] = []
    for item in content:
        if not isinstance(item, dict):
            raise malformed(where, "a token logprob is not an object")
        top = item.get("top_logprobs")
        if top is None:
            top = []
        if not isinstance(top, list) or not all(isinstance(t, dict) for t in top):
            raise malformed(where, "top_logprobs is not a list of objects")
        alternatives = tuple((_token(t, where), _logprob(t, where)) for t in top)
        out.append(TokenLogprob(_token(item, where), _logprob(item, where), alternatives))
    return tuple(out)


def _legacy_logprobs(logprobs: Mapping[str, Any], where: str) -> tuple[TokenLogprob, ...]:
    """``/completions``' shape: parallel lists of tokens, logprobs and {token: logprob}."""
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    tops = logprobs.get("top_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        raise malformed(where, "logprobs.tokens or token_logprobs is not a list")
    if tops is None:
        tops = [None] * len(tokens)
    if not isinstance(tops, list) or not len(tokens) == len(values) == len(tops):
        raise malformed(where, "logprobs' lists differ in length")
    out: list[TokenLogprob] = []
    for token, value, top in zip(tokens, values, tops, strict=True):
        if top is None:
            top = {}
        if not isinstance(top, dict):
            raise malformed(where, "a top_logprobs entry is not an object")
        alternatives = tuple(
            (_token({"token": t}, where), _logprob({"logprob": v}, where)) for t, v in top.items()
        )
        entry = {"token": token, "logprob": value}
        out.append(TokenLogprob(_token(entry, where), _logprob(entry, where), alternatives))
    return tuple(out)


def _token(item: Mapping[str, Any], where: str) -> str:
    token = item.get("token")
    if not isinstance(token, str):
        raise malformed(where, "a logprob's token is not a string")
    return token


def _logprob(item: Mapping[str, Any], where: str) -> float:
    value = item.get("logprob")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise malformed(where, "a logprob is not a number")
    if math.isnan(value) or value > 0:
        raise malformed(where, "a logprob is not a log-probability")
    return float(value)
