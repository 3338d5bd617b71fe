"""Wire schemas → domain requests. The only place that knows both shapes."""

from __future__ import annotations

from cloudlet.api.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    JsonObjectFormat,
    JsonSchemaResponseFormat,
    Message,
    NamedToolChoice,
    ResponseFormat,
    ToolDef,
)
from cloudlet.api.schemas import ToolChoice as WireToolChoice
from cloudlet.domain import (
    ChatMessage,
    GenerationRequest,
    ModelId,
    SamplingParams,
    Tool,
    ToolCall,
    ToolChoice,
)
from cloudlet.domain import ResponseFormat as DomainFormat
from cloudlet.errors import InvalidRequest

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


def tools(defs: list[ToolDef] | None) -> tuple[Tool, ...]:
    out = tuple(
        Tool(
            name=d.function.name,
            description=d.function.description or "",
            parameters=d.function.parameters,
            strict=d.function.strict,
        )
        for d in defs or ()
    )
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise InvalidRequest("tools: each function needs a distinct name", param="tools")
    for tool in out:
        kind = (tool.parameters or {}).get("type", "object")
        if kind != "object":
            raise InvalidRequest(
                f"tools: the parameters of {tool.name!r} must be a JSON schema of an object",
                param="tools",
            )
    return out


def tool_choice(choice: WireToolChoice | None, offered: tuple[Tool, ...]) -> ToolChoice:
    """The domain's choice; naming a function that is not among ``tools`` is a 400."""
    if choice is None:
        return ToolChoice("auto" if offered else "none")
    if isinstance(choice, NamedToolChoice):
        name = choice.function.name
        if name not in {t.name for t in offered}:
            raise InvalidRequest(
                f"tool_choice names function {name!r}, which is not among tools",
                param="tool_choice",
            )
        return ToolChoice("function", name)
    if choice != "none" and not offered:
        raise InvalidRequest(
            f"tool_choice {choice!r} needs tools; none were given", param="tool_choice"
        )
    return ToolChoice(choice)


def chat_message(m: Message) -> ChatMessage:
    calls = tuple(
        ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
        for c in m.tool_calls or ()
    )
    parts: tuple[dict[str, object], ...] = ()
    if m.has_images() and isinstance(m.content, list):
        parts = tuple(p.model_dump(exclude_none=True) for p in m.content)
    return ChatMessage(
        role=_role(m.role),
        content=m.text(),
        name=m.name,
        tool_calls=calls,
        tool_call_id=m.tool_call_id,
        parts=parts,
    )


def chat_request(body: ChatCompletionRequest) -> GenerationRequest:
    offered = tools(body.tools)
    return GenerationRequest(
        model=ModelId(body.model),
        messages=tuple(chat_message(m) for m in body.messages),
        max_tokens=body.max_completion_tokens or body.max_tokens,
        stop=_stops(body.stop),
        sampling=_sampling(body),
        response_format=_format(body.response_format),
        tools=offered,
        tool_choice=tool_choice(body.tool_choice, offered),
        parallel_tool_calls=body.parallel_tool_calls is not False,
        logprobs=bool(body.logprobs or body.top_logprobs),
        top_logprobs=body.top_logprobs or 0,
        n=body.n or 1,
    )


def completion_request(body: CompletionRequest) -> GenerationRequest:
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    return GenerationRequest(
        model=ModelId(body.model),
        prompt=prompt,
        max_tokens=body.max_tokens,
        stop=_stops(body.stop),
        sampling=_sampling(body),
        logprobs=body.logprobs is not None,
        top_logprobs=body.logprobs or 0,
        n=body.n or 1,
    )


def _role(role: str) -> str:
    # OpenAI's newer "developer" role is a system message to templates that predate it.
    return "system" if role == "developer" else role
