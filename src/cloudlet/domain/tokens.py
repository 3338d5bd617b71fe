"""Counting tokens without a tokenizer: an estimate (rate limits, upstreams that report no
usage) and an upper bound (what money reserves), shared by the gateway and the engines.

The bound must hold on any model: a request is charged at most what was reserved for it, so a
bound below the real count under-charges and one above it only holds money a little longer.
"""

from __future__ import annotations

import json
import math

from cloudlet.domain.types import ChatMessage, GenerationRequest

_CHARS_PER_TOKEN = 4  # the usual rule of thumb for English BPE vocabularies
_MESSAGE_OVERHEAD = 4  # role and separators of a chat template, per message
#: Tokens a chat template may add around one message beyond its text: the role's header and
#: separators, special tokens such as ``<|im_start|>`` / ``<|im_end|>`` (ChatML uses 5).
BOUND_MESSAGE_OVERHEAD = 16
#: Tokens a request may carry beyond its messages: BOS, the generation prompt, and a default
#: system prompt some templates insert (SmolLM2's is 19 tokens with its wrapper).
BOUND_REQUEST_OVERHEAD = 64
#: Tokens one image may cost a vision model. Providers bill images by size in tiles, not by
#: the bytes of their URL; the largest published per-image counts are under this.
BOUND_IMAGE_TOKENS = 6144
#: Tokens a template may wrap around the tool definitions it renders (the tool-use preamble).
BOUND_TOOLS_OVERHEAD = 256


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
    reserve (the real count, known at the end, is charged then). Tool definitions, earlier
    tool calls and images count too: templates render them into the prompt."""
    if request.messages is None:
        return token_bound(request.prompt or "") + BOUND_REQUEST_OVERHEAD
    total = BOUND_REQUEST_OVERHEAD + sum(_message_bound(m) for m in request.messages)
    if request.tools:
        rendered = json.dumps([t.as_wire_dict() for t in request.tools], ensure_ascii=False)
        total += token_bound(rendered) + BOUND_TOOLS_OVERHEAD
    return total


def _message_bound(m: ChatMessage) -> int:
    total = token_bound(m.content) + token_bound(m.role) + BOUND_MESSAGE_OVERHEAD
    if m.name is not None:
        total += token_bound(m.name)
    if m.tool_call_id is not None:
        total += token_bound(m.tool_call_id)
    for call in m.tool_calls:
        total += token_bound(call.id) + token_bound(call.name) + token_bound(call.arguments)
        total += BOUND_MESSAGE_OVERHEAD
    for part in m.parts:
        if part.get("type") == "image_url":
            total += BOUND_IMAGE_TOKENS
    return total
