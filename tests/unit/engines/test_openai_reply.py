"""Reading upstream replies: every malformed shape is an UpstreamError, nothing else escapes."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudlet.domain import Finished, TextDelta, TokenLogprob, Usage
from cloudlet.engines import openai_reply as reply
from cloudlet.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    UpstreamError,
    UpstreamRateLimited,
)

WHERE = "replica 0 of model 'm'"


def feed(*chunks: object) -> list[object]:
    parser = reply.StreamParser(WHERE, prompt_estimate=5)
    events: list[object] = []
    for chunk in chunks:
        data = chunk if isinstance(chunk, bytes) else json.dumps(chunk).encode()
        events.extend(parser.feed(b"data: " + data))
    events.append(parser.finish())
    return events


def text_chunk(text: str, reason: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": reason}]}


MALFORMED_CHUNKS = [
    {"error": "overloaded"},  # TGI's shape
    {"error": {"message": "boom"}},
    {"choices": 5},
    {"choices": {"a": 1}},
    {"choices": ["x"]},
    {"choices": [{"delta": "x"}]},
    {"choices": [{"delta": {"content": 5}}]},
    {"choices": [{"text": ["x"]}]},
    {"choices": [{"delta": {"content": "x"}, "finish_reason": 3}]},
    {"choices": [], "usage": {"prompt_tokens": "abc"}},
    {"choices": [], "usage": {"prompt_tokens": -1, "completion_tokens": 2}},
    {"choices": [], "usage": {"prompt_tokens": True}},
    {"choices": [], "usage": {"prompt_tokens": 1e300}},
    {"choices": [], "usage": "lots"},
    {"choices": [{"delta": {"tool_calls": {"index": 0}}}]},
    {"choices": [{"delta": {"tool_calls": ["x"]}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": "0"}]}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": -1}]}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": "f"}]}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": 5}}]}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": {}}}]}}]},
    {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": 7}]}}]},
    {"choices": [{"delta": {"content": "x"}, "logprobs": "x"}]},
    {"choices": [{"delta": {"content": "x"}, "logprobs": {"content": [{"token": "x"}]}}]},
    {"choices": [{"delta": {"content": "x"}, "logprobs": {"content": [{"logprob": -1}]}}]},
    {
        "choices": [
            {"delta": {"content": "x"}, "logprobs": {"content": [{"token": "x", "logprob": 2}]}}
        ]
    },
    {
        "choices": [
            {
                "delta": {"content": "x"},
                "logprobs": {"content": [{"token": "x", "logprob": -1, "top_logprobs": [1]}]},
            }
        ]
    },
    [1, 2],
    "text",
]


@pytest.mark.parametrize("chunk", MALFORMED_CHUNKS, ids=lambda c: json.dumps(c)[:40])
def test_a_malformed_chunk_is_an_upstream_error(chunk: object) -> None:
    with pytest.raises(UpstreamError, match="replica 0 of model 'm'"):
        feed(chunk, text_chunk("hi", "stop"))


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"{not json", "is not JSON"),
        (b"\xff\xfe", "is not JSON"),
        (b'{"a": "\\ud800"}', "is not JSON"),  # a lone surrogate could never reach a client
        (b"[" * 100_000, "is nested too deeply"),
        (b'{"a": 1} {"b": 2}', "is not JSON"),
    ],
)
def test_a_chunk_that_is_not_json_is_an_upstream_error(data: bytes, says: str) -> None:
    with pytest.raises(UpstreamError, match=f"\\(a chunk {says}\\)"):
        feed(data)


def test_null_fields_are_absent_fields() -> None:
    events = feed(
        {"error": None, "choices": None},
        {"choices": [{"delta": None, "text": None}]},
        {"choices": [{"delta": {"content": None}}], "usage": None},
        text_chunk("hi", "length"),
        {"choices": [], "usage": {"prompt_tokens": 3.0, "completion_tokens": None}},
    )
    assert events == [TextDelta("hi"), Finished("length", Usage(3, 0))]


def test_a_stream_without_usage_is_counted_here() -> None:
    assert feed(text_chunk("a"), text_chunk("b", "stop"))[-1] == Finished("stop", Usage(5, 2))


def test_a_whole_completion_instead_of_a_stream_is_the_answer() -> None:
    parser = reply.StreamParser(WHERE, prompt_estimate=5)
    body = {
        "object": "chat.completion",
        "choices": [
            {"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2},
    }
    assert parser.feed_body(json.dumps(body).encode()) == [TextDelta("hello")]
    assert parser.finish() == Finished("stop", Usage(7, 2))


@pytest.mark.parametrize(
    "body",
    [
        {"error": "text"},
        {"error": None},
        {"choices": []},
        {"choices": [{"message": 5}]},
        {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "abc"}},
    ],
    ids=lambda b: json.dumps(b)[:40],
)
def test_a_malformed_whole_completion_is_an_upstream_error(body: object) -> None:
    parser = reply.StreamParser(WHERE, prompt_estimate=5)
    with pytest.raises(UpstreamError):
        parser.feed_body(json.dumps(body).encode())


@pytest.mark.parametrize("body", [b'{"error": "text"}', b'{"error": null}', b"[]", b"\xff", b""])
@pytest.mark.parametrize("status", [400, 413, 422, 500, 503])
def test_any_error_body_maps_by_status(body: bytes, status: int) -> None:
    error = reply.status_error(status, body, {}, WHERE)
    expected = InvalidRequest if status in (400, 413, 422) else UpstreamError
    assert type(error) is expected


def test_error_bodies_keep_their_meaning() -> None:
    body = b'{"error": {"message": "too long", "code": "context_length_exceeded"}}'
    error = reply.status_error(400, body, {}, WHERE)
    assert isinstance(error, ContextLengthExceeded) and "too long" in error.message
    tgi = reply.status_error(422, b'{"error": "Input validation error"}', {}, WHERE)
    assert "Input validation error" in tgi.message
    limited = reply.status_error(429, b"", {"retry-after": "nan"}, WHERE)
    assert isinstance(limited, UpstreamRateLimited) and limited.retry_after == 1


def test_embeddings_are_read_in_index_order() -> None:
    body = {
        "data": [{"index": 1, "embedding": [0, 1]}, {"index": 0, "embedding": [2.5, 3]}],
        "usage": {"prompt_tokens": 4},
    }
    result = reply.embeddings(json.dumps(body).encode(), ["a", "b"], WHERE)
    assert result.vectors == [[2.5, 3.0], [0.0, 1.0]] and result.prompt_tokens == 4


@pytest.mark.parametrize(
    "body",
    [
        {"error": "text"},
        {"data": 5},
        {"data": [{"index": 0, "embedding": [1.0]}]},  # one for two inputs
        {"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]},
        {"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]},
        {"data": [{"index": 0, "embedding": ["x"]}, {"index": 1, "embedding": [1.0]}]},
        {"data": [{"index": 0, "embedding": [True]}, {"index": 1, "embedding": [1.0]}]},
        {"data": [{"index": 0, "embedding": [1.0]}, {"index": 5, "embedding": [1.0]}]},
        {"data": [{"index": 0, "embedding": [1]}, {"index": 1, "embedding": [1]}], "usage": 3},
    ],
    ids=lambda b: json.dumps(b)[:48],
)
def test_malformed_embeddings_are_an_upstream_error(body: object) -> None:
    with pytest.raises(UpstreamError):
        reply.embeddings(json.dumps(body).encode(), ["a", "b"], WHERE)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    *("choices", "delta", "content", "text", "message", "usage", "error", "index"),
                    *("prompt_tokens", "completion_tokens", "finish_reason", "data", "embedding"),
                    *("tool_calls", "function", "name", "arguments", "id", "logprobs"),
                    *("top_logprobs", "token", "logprob"),
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(JSON)
def test_no_reply_shape_raises_anything_but_an_upstream_error(value: object) -> None:
    data = json.dumps(value).encode()
    for read in (
        lambda: feed(data),
        lambda: reply.StreamParser(WHERE, 1).feed_body(data),
        lambda: reply.embeddings(data, ["a"], WHERE),
        lambda: reply.status_error(400, data, {}, WHERE),
    ):
        with contextlib.suppress(UpstreamError):
            read()


def test_completions_logprobs_in_the_legacy_shape_are_read() -> None:
    chunk = {
        "choices": [
            {
                "text": "ab",
                "logprobs": {
                    "tokens": ["a", "b"],
                    "token_logprobs": [-0.5, -1.0],
                    "top_logprobs": [{"a": -0.5, "c": -2.0}, None],
                    "text_offset": [0, 1],
                },
                "finish_reason": "stop",
            }
        ]
    }
    events = feed(chunk)
    logprobs = (
        TokenLogprob("a", -0.5, (("a", -0.5), ("c", -2.0))),
        TokenLogprob("b", -1.0),
    )
    assert events[0] == TextDelta("ab", logprobs)


@pytest.mark.parametrize(
    "logprobs",
    [
        {"tokens": "ab", "token_logprobs": [-1.0]},
        {"tokens": ["a"], "token_logprobs": [-1.0, -2.0]},
        {"tokens": ["a"], "token_logprobs": ["x"]},
        {"tokens": ["a"], "token_logprobs": [-1.0], "top_logprobs": [[1]]},
        {"tokens": ["a"], "token_logprobs": [-1.0], "top_logprobs": [{"a": "x"}]},
    ],
)
def test_malformed_legacy_logprobs_are_an_upstream_error(logprobs: object) -> None:
    with pytest.raises(UpstreamError):
        feed({"choices": [{"text": "a", "logprobs": logprobs, "finish_reason": "stop"}]})


def _stream(*lines: bytes, waited_s: float | None = None) -> Finished:
    parser = reply.StreamParser("up", 5, waited_s=waited_s)
    for line in (b'data: {"choices":[{"delta":{"content":"a"}}]}', *lines):
        parser.feed(line)
    parser.feed(b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}')
    parser.feed(b"data: [DONE]")
    return parser.finish()


def test_queue_time_is_the_wait_here_plus_what_a_cloudlet_upstream_reports() -> None:
    assert _stream().queued_s is None  # nobody measured
    assert _stream(waited_s=0.25).queued_s == 0.25
    assert _stream(b": queued_s=0.500000").queued_s == 0.5
    assert _stream(b": queued_s=0.500000", waited_s=0.25).queued_s == 0.75
    # Anything but a plausible number of seconds only loses the metric, never the answer.
    for bad in (b"-1", b"nan", b"inf", b"1e9", b"x", b""):
        assert _stream(b": queued_s=" + bad, waited_s=0.25).queued_s == 0.25
    # An ordinary comment is still nothing.
    assert _stream(b": keep-alive").queued_s is None
