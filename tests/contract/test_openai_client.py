"""Contract: the official `openai` client against a real `cloudlet serve` subprocess."""

from __future__ import annotations

import json
import math

import jsonschema
import openai
import pytest
from openai import OpenAI

from tests.conftest import Server

pytestmark = pytest.mark.slow
CHAT = "smollm2"
EMBED = "all-minilm-l6-v2"
HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key="not-needed-on-loopback", max_retries=0)


def test_models(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [CHAT, EMBED]
    model = client.models.retrieve(CHAT)
    assert (model.id, model.object, model.owned_by) == (CHAT, "model", "cloudlet")


def test_chat_non_streaming(client: OpenAI) -> None:
    r = client.chat.completions.create(model=CHAT, messages=HI, max_tokens=16)  # type: ignore[arg-type]
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-") and r.created > 0 and r.model == CHAT
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage is not None
    assert r.usage.prompt_tokens > 5
    assert 0 < r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_greedy_is_deterministic_and_max_tokens_is_exact(client: OpenAI) -> None:
    def ask() -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            max_tokens=12,
            temperature=0,
        )

    a, b = ask(), ask()
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].finish_reason == "length"
    assert a.usage is not None and a.usage.completion_tokens == 12


def test_seeded_sampling_is_reproducible(client: OpenAI) -> None:
    def ask(seed: int) -> str | None:
        r = client.chat.completions.create(
            model=CHAT, messages=HI, max_tokens=20, temperature=1.0, seed=seed
        )  # type: ignore[arg-type]
        return r.choices[0].message.content

    assert ask(42) == ask(42)


def test_chat_streaming_chunks_and_usage(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT,
        messages=HI,  # type: ignore[arg-type]
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason in ("stop", "length")
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens >= len(content)
    assert usage_chunk.usage.completion_tokens <= 10


def test_stop_sequence(client: OpenAI) -> None:
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
        max_tokens=60,
        temperature=0,
        stop=["5"],
    )
    text = r.choices[0].message.content or ""
    assert "5" not in text
    assert r.choices[0].finish_reason == "stop"


def test_completions(client: OpenAI) -> None:
    r = client.completions.create(model=CHAT, prompt="The capital of France is", max_tokens=8)
    assert r.object == "text_completion"
    assert r.choices[0].text
    assert r.usage is not None and r.usage.completion_tokens <= 8
    streamed = list(
        client.completions.create(
            model=CHAT, prompt="Once upon a time", max_tokens=8, stream=True, temperature=0
        )
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices)
    assert streamed[-1].choices[0].finish_reason in ("stop", "length")


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embeddings_paraphrase_is_closer_than_unrelated(client: OpenAI) -> None:
    texts = [
        "A man is playing a guitar.",
        "Someone is strumming a guitar.",
        "The stock market fell sharply today.",
    ]
    r = client.embeddings.create(model=EMBED, input=texts)
    assert r.model == EMBED and [d.index for d in r.data] == [0, 1, 2]
    vectors = [d.embedding for d in r.data]
    assert all(len(v) == 384 for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert r.usage.prompt_tokens > 0
    single = client.embeddings.create(model=EMBED, input="A man is playing a guitar.")
    assert cosine(single.data[0].embedding, vectors[0]) > 0.999


def test_json_schema_answer_parses_and_validates(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "hobbies": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        },
        "required": ["name", "age", "hobbies"],
        "additionalProperties": False,
    }
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Describe a fictional person as JSON."}],
        max_tokens=200,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        },
    )
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content or ""), schema)


def test_json_object_answer_parses(client: OpenAI) -> None:
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": 'Reply with a JSON object like {"colour": "red"}.'}],
        max_tokens=100,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict)
