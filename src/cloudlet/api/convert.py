"""Wire schemas → domain requests. The only place that knows both shapes."""

from __future__ import annotations

from cloudlet.api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    JsonObjectFormat,
    JsonSchemaResponseFormat,
    ResponseFormat,
)
from cloudlet.domain import (
    ChatMessage,
    GenerationRequest,
    ModelId,
    SamplingParams,
)
from cloudlet.domain import ResponseFormat as DomainFormat

_DEFAULTS = SamplingParams()


def _sampling(body: ChatCompletionRequest | CompletionRequest) -> SamplingParams:
    def pick(value: float | int | None, default: float | int) -> float | int:
        return default if value is None else value

    return SamplingParams(
        temperature=float(pick(body.temperature, _DEFAULTS.temperature)),
        top_p=float(pick(body.top_p, _DEFAULTS.top_p)),
        top_k=int(pick(body.top_k, _DEFAULTS.top_k)),
        min_p=float(pick(body.min_p, _DEFAULTS.min_p)),
        seed=body.seed,
        presence_penalty=float(pick(body.presence_penalty, _DEFAULTS.presence_penalty)),
        frequency_penalty=float(pick(body.frequency_penalty, _DEFAULTS.frequency_penalty)),
        repeat_penalty=float(pick(body.repeat_penalty, _DEFAULTS.repeat_penalty)),
    )


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _format(fmt: ResponseFormat | None) -> DomainFormat:
    if isinstance(fmt, JsonSchemaResponseFormat):
        return DomainFormat("json_schema", fmt.json_schema.schema_ or None)
    if isinstance(fmt, JsonObjectFormat):
        return DomainFormat("json_object")
    return DomainFormat()


def chat_request(body: ChatCompletionRequest) -> GenerationRequest:
    messages = tuple(
        ChatMessage(role=_role(m.role), content=m.text(), name=m.name) for m in body.messages
    )
    return GenerationRequest(
        model=ModelId(body.model),
        messages=messages,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        stop=_stops(body.stop),
        sampling=_sampling(body),
        response_format=_format(body.response_format),
    )


def completion_request(body: CompletionRequest) -> GenerationRequest:
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    return GenerationRequest(
        model=ModelId(body.model),
        prompt=prompt,
        max_tokens=body.max_tokens,
        stop=_stops(body.stop),
        sampling=_sampling(body),
    )


def _role(role: str) -> str:
    # OpenAI's newer "developer" role is a system message to templates that predate it.
    return "system" if role == "developer" else role
