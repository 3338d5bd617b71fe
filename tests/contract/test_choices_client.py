"""Contract: ``n`` choices with the official `openai` client against a real `cloudlet serve`
(the bundled SmolLM2 in its worker): choices indexed 0..n-1, streamed chunks tagged with their
choice (each validated against the client's types), usage summing every choice's tokens and
counting the prompt once, and the prompt evaluated once for all choices."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk

from tests.conftest import Server

pytestmark = pytest.mark.slow
CHAT = "smollm2"
# About 90 tokens that no other test sends: its prompt is in no cache.
SYSTEM = (
    "You are Wren, the assistant of the Larch Hill Allotments. Plots are ten metres by five "
    "and cost forty euros a year. Water is shared from the tanks by the gate; hoses are not "
    "allowed in July and August. Bonfires are forbidden. The gate code changes every spring "
    "and is sent to members by post. Answer briefly."
)


@pytest.fixture(scope="module")
def client(server: Server) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key="not-needed-on-loopback", max_retries=0)


def stats(server: Server) -> dict[str, Any]:
    entry: dict[str, Any] = httpx.get(server.base_url + "/stats", timeout=10).json()[CHAT]
    return entry


def test_greedy_choices_share_one_prompt_evaluation(server: Server, client: OpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Can I use a hose in summer?"},
    ]
    before = stats(server)
    r = client.chat.completions.create(
        model=CHAT, messages=messages, n=4, max_tokens=16, temperature=0, logprobs=True
    )
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    texts = [c.message.content for c in r.choices]
    assert texts[0] and texts == [texts[0]] * 4  # greedy from the one prompt's logits
    assert all(c.finish_reason in ("stop", "length") for c in r.choices)
    tokens = [len(c.logprobs.content or []) for c in r.choices if c.logprobs is not None]
    assert r.usage is not None and len(tokens) == 4
    assert r.usage.completion_tokens == sum(tokens)  # every choice's tokens
    prompt = r.usage.prompt_tokens
    assert prompt > 60
    # The worker's counters (polled once a second): the other three choices copied the
    # first one's cells instead of evaluating the prompt again.
    deadline = time.monotonic() + 15
    while True:
        after = stats(server)
        cached = after["prompt_tokens_cached"] - before["prompt_tokens_cached"]
        if cached >= 3 * prompt or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    evaluated = after["prompt_tokens_evaluated"] - before["prompt_tokens_evaluated"]
    assert cached >= 3 * prompt, (cached, evaluated, prompt)
    assert evaluated <= prompt
    one = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=1)
    assert one.usage is not None and one.usage.prompt_tokens == prompt  # counted once


def test_streamed_choices_carry_their_index(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Name a vegetable to grow."}],
        n=3,
        max_tokens=12,
        temperature=1.0,
        seed=11,
        logprobs=True,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, tokens = ["", "", ""], [0, 0, 0]
    roles: list[int] = []
    reasons: dict[int, str] = {}
    chunks = list(stream)
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.model_dump())  # the client's published type
        for c in chunk.choices:
            if c.delta.role == "assistant":
                roles.append(c.index)
            texts[c.index] += c.delta.content or ""
            tokens[c.index] += len(c.logprobs.content or []) if c.logprobs else 0
            if c.finish_reason is not None:
                assert c.index not in reasons  # one finish per choice
                reasons[c.index] = c.finish_reason
    assert sorted(roles) == [0, 1, 2]
    assert set(reasons) == {0, 1, 2} and all(texts)
    assert len(set(texts)) > 1, texts  # seeds 11, 12, 13 sample apart
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == sum(tokens) and all(0 < t <= 12 for t in tokens)


def test_completions_choices(client: OpenAI) -> None:
    r = client.completions.create(
        model=CHAT, prompt="The best soil for carrots is", n=2, max_tokens=8, temperature=0
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].text and r.choices[0].text == r.choices[1].text  # greedy
    assert r.usage is not None and 0 < r.usage.completion_tokens <= 16
    streamed = list(
        client.completions.create(
            model=CHAT, prompt="Tomatoes need", n=2, max_tokens=6, stream=True, echo=True
        )
    )
    texts = ["", ""]
    for chunk in streamed:
        for c in chunk.choices:
            texts[c.index] += c.text
    assert all(t.startswith("Tomatoes need") and len(t) > len("Tomatoes need") for t in texts)


def test_too_many_choices_is_a_clear_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "hi"}], n=9
        )
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "n"  # type: ignore[index]
