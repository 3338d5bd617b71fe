"""Pieces every llama.cpp engine shares: the model's chat template, grammars, defaults.

Kept apart from the scheduler so that every llama.cpp engine renders prompts and constrains
output identically.
"""

from __future__ import annotations

import os
import re
from typing import Any, cast

from llama_cpp import Llama
from llama_cpp._internals import LlamaModel
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from cloudlet.domain import GenerationRequest, ResponseFormat
from cloudlet.engines.llamacpp_schema import schema_to_gbnf
from cloudlet.engines.toolcalls import CLOSE, OPEN, call_schema, offered_tools, template_input
from cloudlet.errors import ContextLengthExceeded, InvalidRequest

# SmolLM2's own template (ChatML), used only when a GGUF carries none.
_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def default_threads() -> int:
    """Physical-ish cores: llama.cpp is slower with more threads than cores."""
    return max(1, (os.cpu_count() or 2))


class PromptRenderer:
    """Renders chat messages with the model's own Jinja chat template.

    Takes a ``Llama`` or a bare ``LlamaModel``: the batched engine owns its context itself and
    has no ``Llama`` object, yet must render and tokenize exactly as ``Llama`` does.
    """

    def __init__(self, llm: Llama | LlamaModel) -> None:
        model = llm._model if isinstance(llm, Llama) else llm
        metadata = llm.metadata if isinstance(llm, Llama) else model.metadata()
        template = metadata.get("tokenizer.chat_template") or _CHATML
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(model.token_eos()),
            bos_token=model.token_get_text(model.token_bos()),
        )
        self._model = model
        self.max_piece_bytes = _longest_piece(model)
        # A template that renders `tools` describes them (and the call format) itself.
        self.knows_tools = "tools" in template

    def prompt_text(self, request: GenerationRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        messages, tools = template_input(request, self.knows_tools)
        try:
            return self._formatter(messages=cast(Any, messages), tools=cast(Any, tools)).prompt
        except Exception as exc:  # jinja raises for messages the template rejects
            raise InvalidRequest(
                f"the model's chat template rejected the messages: {exc}", param="messages"
            ) from exc

    def check_fits(self, request: GenerationRequest, context: int, max_tokens: int) -> None:
        """Refuse, before any templating, a prompt that certainly cannot fit ``context``.

        Every token stands for at most :attr:`max_piece_bytes` bytes of the text it came from,
        so a text of ``n`` UTF-8 bytes is at least ``n / max_piece_bytes`` tokens. Chat
        messages are counted without their surrounding whitespace (templates may trim it);
        the template only adds to the rest. Cheap (no tokenizing), and never refuses a prompt
        that would fit: it turns the quadratic cost of tokenizing a huge prompt into a 400.
        """
        if request.prompt is not None:
            size = len(request.prompt.encode("utf-8"))
        else:
            assert request.messages is not None
            size = sum(len(m.content.strip().encode("utf-8")) for m in request.messages)
        self._check_bytes(size, request, context, max_tokens)

    def _check_bytes(
        self, size: int, request: GenerationRequest, context: int, max_tokens: int
    ) -> None:
        at_least = -(-size // self.max_piece_bytes)
        if at_least + max_tokens > context:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {context} tokens. However, your "
                f"prompt is {size} bytes, at least {at_least} tokens, and you requested "
                f"{max_tokens} tokens for the completion. Please reduce the length of the "
                "prompt or of max_tokens.",
                param="messages" if request.messages is not None else "prompt",
            )

    def tokens(
        self, request: GenerationRequest, context: int | None = None, max_tokens: int = 0
    ) -> list[int]:
        """Render and tokenize (slow for long prompts: call it off the event loop).

        With ``context``, the rendered text is checked against it by its size first, so an
        oversized prompt is refused before the tokenizer (quadratic in special tokens) runs.
        """
        text = self.prompt_text(request).encode("utf-8")
        if context is not None:
            self._check_bytes(len(text), request, context, max_tokens)
        # Chat templates write their special tokens as text; a raw prompt gets a BOS if needed.
        tokens: list[int] = self._model.tokenize(
            text, add_bos=request.prompt is not None, special=True
        )
        if not tokens:
            # An empty prompt (OpenAI accepts ""): generate as from the start of a document.
            # A sequence of no tokens would fail llama_decode, and with it the whole batch.
            start = next(
                (t for t in (self._model.token_bos(), self._model.token_eos()) if t >= 0), None
            )
            if start is None:
                raise InvalidRequest("the prompt is empty", param="prompt")
            tokens = [start]
        return tokens


def _longest_piece(model: LlamaModel) -> int:
    """The most bytes of text any one token stands for (special tokens included)."""
    longest = 1
    for token in range(model.n_vocab()):
        longest = max(longest, len(model.token_to_piece(token, special=True)))
    return longest


def grammar_for(response_format: ResponseFormat) -> LlamaGrammar | None:
    """A llama.cpp grammar that forces the requested JSON shape, or None for free text."""
    if response_format.kind == "text":
        return None
    try:
        if response_format.kind == "json_object" or not response_format.schema:
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        rules = schema_to_gbnf(response_format.schema, "response_format")
        return LlamaGrammar.from_string(rules, verbose=False)
    except InvalidRequest:
        raise
    except Exception as exc:  # the converter raises plain exceptions for unsupported schemas
        raise InvalidRequest(
            f"response_format.json_schema is not supported: {exc}", param="response_format"
        ) from exc


_MAX_PARALLEL_CALLS = 4


def tool_triggers(request: GenerationRequest) -> tuple[str, ...]:
    """Regexes that switch a lazy grammar on: under ``auto`` the model writes freely until it
    opens a call, and from ``<tool_call>`` on (the first group) the grammar holds."""
    if offered_tools(request) and request.tool_choice.mode == "auto":
        return (rf"[\s\S]*?({re.escape(OPEN)})[\s\S]*",)
    return ()


def tool_grammar(request: GenerationRequest) -> LlamaGrammar | None:
    """The grammar of calls to the offered tools: one or more (one unless
    ``parallel_tool_calls``), each with arguments that follow the tool's schema. Under
    ``required`` or a named function it holds from the first token; under ``auto`` only from
    ``<tool_call>`` on (see :func:`tool_triggers`)."""
    tools = offered_tools(request)
    if not tools:
        return None
    rules = schema_to_gbnf(call_schema(tools), "tools")
    rules = re.sub(r"^root ::=", "cl-call ::=", rules, flags=re.MULTILINE)
    block = f'"{OPEN}\\n" cl-call "\\n{CLOSE}"'
    more = _MAX_PARALLEL_CALLS - 1
    several = request.parallel_tool_calls and request.tool_choice.mode != "function"
    calls = f'{block} ("\\n" {block}){{0,{more}}}' if several else block
    root = f"root ::= {calls}\n"
    try:
        return LlamaGrammar.from_string(root + rules, verbose=False)
    except Exception as exc:
        raise InvalidRequest(
            f"a tool's parameters schema is not supported: {exc}", param="tools"
        ) from exc


def grammar_source(grammar: LlamaGrammar) -> tuple[str, str]:
    """The GBNF text and root rule of a grammar from :func:`grammar_for`.

    The batched engine builds llama.cpp's grammar sampler itself (one per sequence) and needs
    the text; ``LlamaGrammar`` is only a holder of it in llama-cpp-python 0.3.x.
    """
    return str(grammar._grammar), str(grammar._root)


def sampling_kwargs(request: GenerationRequest) -> dict[str, Any]:
    """Llama.generate's sampling arguments for this request (OpenAI defaults)."""
    s = request.sampling
    return {
        "temp": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "min_p": s.min_p,
        "typical_p": 1.0,
        "repeat_penalty": s.repeat_penalty,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
    }
