"""Anthropic Messages API wire schemas (``/v1/messages``): the requests we accept and the
responses and stream events we send. Validation is as strict as for the OpenAI wire."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool

from cloudlet.api.schemas import NonNegativeInt, PositiveInt, Temperature, _Request


class TextBlock(_Request):
    type: Literal["text"]
    text: str


class Base64Source(_Request):
    type: Literal["base64"]
    media_type: str
    data: str


class UrlSource(_Request):
    type: Literal["url"]
    url: str


class ImageBlock(_Request):
    type: Literal["image"]
    source: Annotated[Base64Source | UrlSource, Field(discriminator="type")]


class ToolUseBlock(_Request):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Request):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlock] | None = None
    is_error: StrictBool | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(block.text for block in self.content)


Block = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")
]


class MessageIn(_Request):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class ToolIn(_Request):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoiceIn(_Request):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: StrictBool | None = None


class MessagesRequest(_Request):
    model: str = Field(min_length=1)
    max_tokens: PositiveInt
    messages: Annotated[list[MessageIn], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    stop_sequences: Annotated[list[str], Field(max_length=4)] | None = None
    temperature: Annotated[Temperature, Field(le=1.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: NonNegativeInt | None = None
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoiceIn | None = None
    stream: StrictBool = False


class CountTokensRequest(_Request):
    model: str = Field(min_length=1)
    messages: Annotated[list[MessageIn], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoiceIn | None = None


# --- responses --------------------------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class TextOut(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseOut(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class UsageOut(BaseModel):
    input_tokens: int
    output_tokens: int


class MessageOut(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextOut | ToolUseOut]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: UsageOut


class TokenCount(BaseModel):
    input_tokens: int
