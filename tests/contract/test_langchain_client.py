"""Contract: LangChain's ``ChatOpenAI(...).bind_tools([...])`` against a real `cloudlet serve`.

The tool is a pydantic model, as LangChain users write them; ``tool_choice`` names it, so the
embedded engine's grammar forces one call whose arguments LangChain parses into ``args``, and
those validate against the model's own JSON schema. Greedy sampling and bounded strings keep
every answer short and the same run after run.
"""

from __future__ import annotations

from typing import Any, Literal

import jsonschema
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.conftest import Server

pytestmark = pytest.mark.slow
CHAT = "smollm2"


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str = Field(description="The city", min_length=1, max_length=30)
    unit: Literal["celsius", "fahrenheit"] = Field(description="The temperature unit")


class BookTable(BaseModel):
    """Book a table at a restaurant."""

    restaurant: str = Field(min_length=1, max_length=30)
    people: int = Field(ge=1, le=12)


SCHEMAS: dict[str, type[BaseModel]] = {"GetWeather": GetWeather, "BookTable": BookTable}


@pytest.fixture(scope="module")
def llm(server: Server) -> ChatOpenAI:
    return ChatOpenAI(
        model=CHAT,
        base_url=server.v1,
        api_key="not-needed-on-loopback",
        temperature=0,
        max_tokens=80,
        max_retries=0,
    )


def check(message: AIMessage, name: str) -> dict[str, object]:
    """One call to ``name`` whose args validate against the tool's schema."""
    assert not message.invalid_tool_calls, message.invalid_tool_calls
    (call,) = message.tool_calls
    assert call["name"] == name and call["id"]
    args = dict(call["args"])
    jsonschema.validate(args, SCHEMAS[name].model_json_schema())
    SCHEMAS[name].model_validate(args)
    return args


def test_bind_tools_with_a_named_tool_gives_a_valid_call(llm: ChatOpenAI) -> None:
    bound = llm.bind_tools([GetWeather, BookTable], tool_choice="GetWeather")
    message = bound.invoke("What's the weather like in Paris today?")
    assert isinstance(message, AIMessage)
    check(message, "GetWeather")
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] > 0 < message.usage_metadata["output_tokens"]


def test_bind_tools_with_any_tool_required(llm: ChatOpenAI) -> None:
    bound = llm.bind_tools([BookTable], tool_choice="any", parallel_tool_calls=False)
    message = bound.invoke("Book a table for four at Chez Anna.")
    assert isinstance(message, AIMessage)
    args = check(message, "BookTable")
    assert 1 <= int(str(args["people"])) <= 12


def test_streamed_call_joins_into_a_valid_call(llm: ChatOpenAI) -> None:
    bound = llm.bind_tools([GetWeather], tool_choice="GetWeather")
    chunks = list(bound.stream("How cold is Oslo, in fahrenheit?"))
    assert len(chunks) > 2  # it streamed
    joined: Any = chunks[0]
    for chunk in chunks[1:]:
        joined = joined + chunk
    assert isinstance(joined, AIMessageChunk)
    check(joined, "GetWeather")


def test_a_tool_result_continues_the_conversation(llm: ChatOpenAI) -> None:
    question = HumanMessage("What's the weather in Rome, in celsius?")
    asked = llm.bind_tools([GetWeather], tool_choice="GetWeather").invoke([question])
    assert isinstance(asked, AIMessage)
    check(asked, "GetWeather")
    result = ToolMessage("22 degrees and sunny", tool_call_id=asked.tool_calls[0]["id"])
    answer = llm.bind_tools([GetWeather], tool_choice="none").invoke([question, asked, result])
    assert isinstance(answer, AIMessage)
    assert not answer.tool_calls
    assert isinstance(answer.content, str) and answer.content.strip()
