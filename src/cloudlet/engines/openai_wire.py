"""The OpenAI wire format as a remote engine speaks it: request bodies out.

Bodies are built from the domain request alone, field by field: nothing a client sent beyond
what :class:`~cloudlet.domain.GenerationRequest` holds can reach an upstream, and the model
name sent is the spec's ``upstream_model``, never the client's. What comes back is read in
:mod:`cloudlet.engines.openai_reply`.
"""

from __future__ import annotations

import math
from typing import Any

from cloudlet.domain import GenerationRequest, SamplingParams

_DEFAULTS = SamplingParams()
_CHARS_PER_TOKEN = 4  # the usual rule of thumb for English BPE vocabularies
_MESSAGE_OVERHEAD = 4  # role and separators of a chat template, per message
#: Tokens a chat template may add around one message beyond its text: the role's header and
#: separators, special tokens such as ``<|im_start|>`` / ``<|im_end|>`` (ChatML uses 5).
BOUND_MESSAGE_OVERHEAD = 16
#: Tokens a request may carry beyond its messages: BOS, the generation prompt, and a default
#: system prompt some templates insert (SmolLM2's is 19 tokens with its wrapper).
BOUND_REQUEST_OVERHEAD = 64


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate, used when an upstream reports no usage and for rate limits."""
    return math.ceil(len(text) / _CHARS_PER_TOKEN)


def estimate_prompt_tokens(request: GenerationRequest) -> int:
    if request.messages is None:
        return estimate_tokens(request.prompt or "")
    return sum(estimate_tokens(m.content) + _MESSAGE_OVERHEAD for m in request.messages)


def token_bound(text: str) -> int:
    """At least as many tokens as any tokenizer makes of ``text``: its UTF-8 byte count.

    Byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM2) and SentencePiece with byte fallback
    (Llama 2, Mistral) emit no token that covers less than one byte of the text, so a text of
    n bytes is at most n tokens, whatever its script: ASCII, CJK (3 bytes a character) or
    emoji (4). Special tokens come from the template, not the text: see the overheads.
    """
    return len(text.encode("utf-8", "surrogatepass"))


def prompt_token_bound(request: GenerationRequest) -> int:
    """An upper bound of the prompt tokens ``request`` can cost on any model: what budgets
    reserve (the real count, known at the end, is charged then)."""
    if request.messages is None:
        return token_bound(request.prompt or "") + BOUND_REQUEST_OVERHEAD
    total = BOUND_REQUEST_OVERHEAD
    for m in request.messages:
        total += token_bound(m.content) + token_bound(m.role) + BOUND_MESSAGE_OVERHEAD
        if m.name is not None:
            total += token_bound(m.name)
    return total


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
