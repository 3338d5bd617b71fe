"""POST /tokenize: a prompt's tokens as a local model evaluates them (vLLM's shape).

The gateway answers for a local model by asking its worker, and the worker by rendering the
model's own chat template and running its tokenizer: the same steps, on the same body, as a
generation, so the count is exact. ``/v1/messages/count_tokens`` counts the same way.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from cloudlet.api import convert
from cloudlet.api.errors import ERROR_RESPONSES
from cloudlet.api.routes.deps import PipelineDep, TokenDep
from cloudlet.api.schemas import MAX_MESSAGES, Message, ToolChoice, ToolDef, _Request
from cloudlet.domain import GenerationRequest, ModelId
from cloudlet.engines.base import TokenCounter
from cloudlet.errors import InvalidRequest
from cloudlet.gateway.pipeline import Pipeline

router = APIRouter()


class TokenizeRequest(_Request):
    """Either ``messages`` (with ``tools``, rendered as for a chat completion) or ``prompt``.
    Other fields of a chat completion body are accepted and play no part."""

    model: str = Field(min_length=1)
    messages: Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)] | None = None
    prompt: str | None = None
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]


async def exact_tokens(
    pipeline: Pipeline, token: str | None, request: GenerationRequest
) -> list[int] | None:
    """The tokens of ``request``'s prompt as its model evaluates them, when that model (for a
    route, its first target) is one that can say (a local model); None otherwise. The key's
    scope and the openness policy are checked first, as for a generation."""
    targets = await pipeline.check(token, request.model)
    engine = pipeline.gateway.engine(targets[0])
    if not isinstance(engine, TokenCounter):
        return None
    return await engine.count_tokens(request)


def _request(body: TokenizeRequest) -> GenerationRequest:
    if (body.messages is None) == (body.prompt is None):
        raise InvalidRequest("give either messages or prompt", param="messages")
    if body.prompt is not None:
        return GenerationRequest(model=ModelId(body.model), prompt=body.prompt)
    assert body.messages is not None
    offered = convert.tools(body.tools)
    return GenerationRequest(
        model=ModelId(body.model),
        messages=tuple(convert.chat_message(m) for m in body.messages),
        tools=offered,
        tool_choice=convert.tool_choice(body.tool_choice, offered),
    )


@router.post(
    "/tokenize",
    response_model=TokenizeResponse,
    responses=ERROR_RESPONSES,
    summary="Tokenize a chat or a prompt as a local model evaluates it",
)
async def tokenize(body: TokenizeRequest, pipeline: PipelineDep, token: TokenDep) -> Any:
    request = _request(body)
    tokens = await exact_tokens(pipeline, token, request)
    if tokens is None:
        raise InvalidRequest(
            f"model {body.model!r} runs elsewhere; only local models tokenize here",
            param="model",
        )
    context = pipeline.gateway.model(body.model).context_length
    return TokenizeResponse(count=len(tokens), max_model_len=context, tokens=tokens)
