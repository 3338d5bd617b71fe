"""Reading the ``n`` choices of an upstream's reply, and the stop string that ended one."""

from __future__ import annotations

import json

import pytest

from cloudlet.domain import Finished, TextDelta, ToolCallDelta, Usage
from cloudlet.engines import openai_reply as reply
from cloudlet.errors import UpstreamError

WHERE = "replica 0 of model 'm'"


def line(chunk: object) -> bytes:
    return b"data: " + json.dumps(chunk).encode()


def delta(index: int, content: str, reason: str | None = None, **extra: object) -> object:
    choice = {"index": index, "delta": {"content": content}, "finish_reason": reason, **extra}
    return {"choices": [choice]}


def test_every_choice_of_a_stream_is_read_with_its_index() -> None:
    parser = reply.StreamParser(WHERE, prompt_estimate=5, n=2)
    events = []
    for chunk in [
        delta(0, "Hi"),
        delta(1, "Yo"),
        delta(1, "!", "stop"),
        delta(0, " there", "length"),
        {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 7}},
    ]:
        events += parser.feed(line(chunk))
    parser.feed(b"data: [DONE]")
    assert events == [
        TextDelta("Hi"),
        TextDelta("Yo", choice=1),
        TextDelta("!", choice=1),
        TextDelta(" there"),
    ]
    assert parser.finish() == Finished("length", Usage(4, 7), ("length", "stop"))


def test_tool_calls_keep_their_choice() -> None:
    parser = reply.StreamParser(WHERE, prompt_estimate=5, n=2)
    call = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
    events = parser.feed(line({"choices": [{"index": 1, "delta": {"tool_calls": [call]}}]}))
    assert events == [ToolCallDelta(0, "{}", "c1", "f", choice=1)]


def test_a_whole_completion_with_several_choices() -> None:
    parser = reply.StreamParser(WHERE, prompt_estimate=5, n=2)
    body = {
        "choices": [
            {"index": 1, "message": {"content": "b"}, "finish_reason": "length"},
            {"index": 0, "message": {"content": "a"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    assert parser.feed_body(json.dumps(body).encode()) == [
        TextDelta("b", choice=1),
        TextDelta("a"),
    ]
    assert parser.finish() == Finished("stop", Usage(3, 2), ("stop", "length"))


@pytest.mark.parametrize(
    "chunk",
    [
        delta(2, "x"),  # only 0 and 1 were asked for
        delta(-1, "x"),
        {"choices": [{"index": "0", "delta": {"content": "x"}}]},
        {"choices": [{"index": True, "delta": {"content": "x"}}]},
        {"choices": [{"index": 0, "delta": {}}, {"index": 0, "delta": {}}]},
    ],
    ids=lambda c: json.dumps(c)[:50],
)
def test_a_choice_index_outside_n_is_malformed(chunk: object) -> None:
    parser = reply.StreamParser(WHERE, prompt_estimate=5, n=2)
    with pytest.raises(UpstreamError, match="malformed"):
        parser.feed(line(chunk))


def test_an_upstream_that_ignores_n_is_an_error_not_a_silent_loss() -> None:
    parser = reply.StreamParser(WHERE, prompt_estimate=5, n=3)
    parser.feed(line(delta(0, "only one", "stop")))
    parser.feed(b"data: [DONE]")
    with pytest.raises(UpstreamError, match="1 of the 3 choices"):
        parser.finish()


def test_one_choice_stream_still_ends_without_choices() -> None:
    parser = reply.StreamParser(WHERE, prompt_estimate=5)
    parser.feed(b"data: [DONE]")
    assert parser.finish() == Finished("stop", Usage(5, 0))


def test_a_stop_string_that_ended_choice_0_is_kept_when_it_was_asked_for() -> None:
    parser = reply.StreamParser(WHERE, prompt_estimate=5, stops=("END", "\n\n"))
    parser.feed(line(delta(0, "text", "stop", stop_reason="END")))
    assert parser.finish().stop_sequence == "END"


@pytest.mark.parametrize("stop_reason", ["OTHER", 128001, None, ["END"]])
def test_a_stop_reason_that_was_not_asked_for_is_not_trusted(stop_reason: object) -> None:
    parser = reply.StreamParser(WHERE, prompt_estimate=5, stops=("END",))
    parser.feed(line(delta(0, "text", "stop", stop_reason=stop_reason)))
    assert parser.finish().stop_sequence is None
