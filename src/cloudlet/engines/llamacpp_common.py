"""Pieces every llama.cpp engine shares: the model's chat template, grammars, defaults.

Kept apart from the scheduler so that every llama.cpp engine renders prompts and constrains
output identically.
"""

from __future__ import annotations

import json
import os
from typing import Any

from llama_cpp import Llama
from llama_cpp._internals import LlamaModel
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from cloudlet.domain import GenerationRequest, ResponseFormat
from cloudlet.errors import InvalidRequest

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

    def prompt_text(self, request: GenerationRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        assert request.messages is not None
        messages: Any = [m.as_template_dict() for m in request.messages]
        try:
            return self._formatter(messages=messages).prompt
        except Exception as exc:  # jinja raises for messages the template rejects
            raise InvalidRequest(
                f"the model's chat template rejected the messages: {exc}", param="messages"
            ) from exc

    def tokens(self, request: GenerationRequest) -> list[int]:
        text = self.prompt_text(request)
        # Chat templates write their special tokens as text; a raw prompt gets a BOS if needed.
        tokens: list[int] = self._model.tokenize(
            text.encode("utf-8"), add_bos=request.prompt is not None, special=True
        )
        return tokens


def grammar_for(response_format: ResponseFormat) -> LlamaGrammar | None:
    """A llama.cpp grammar that forces the requested JSON shape, or None for free text."""
    if response_format.kind == "text":
        return None
    try:
        if response_format.kind == "json_object" or not response_format.schema:
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        return LlamaGrammar.from_json_schema(json.dumps(response_format.schema), verbose=False)
    except Exception as exc:  # the converter raises plain exceptions for unsupported schemas
        raise InvalidRequest(
            f"response_format.json_schema is not supported: {exc}", param="response_format"
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
