"""JSON schema → grammar: integer bounds are enforced, unenforceable keywords refused."""

from __future__ import annotations

import re

import pytest

from cloudlet.engines.llamacpp_schema import integer_range, schema_to_gbnf
from cloudlet.errors import InvalidRequest


def as_regex(gbnf: str) -> re.Pattern[str]:
    """The expression is literals, digit classes, {n} repeats, | and parentheses: a regex."""
    return re.compile(gbnf.replace('"', "").replace(" ", ""))


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(1, 99), (0, 0), (7, 7), (-15, 15), (-300, -42), (95, 1234), (0, 1000), (123, 4567)],
)
def test_integer_range_accepts_exactly_the_range(lo: int, hi: int) -> None:
    pattern = as_regex(integer_range(lo, hi))
    accepted = {n for n in range(lo - 1200, hi + 1200) if pattern.fullmatch(str(n))}
    assert accepted == set(range(lo, hi + 1))
    assert not pattern.fullmatch("007") and not pattern.fullmatch("-0")


def test_one_sided_ranges() -> None:
    at_least_5 = as_regex(integer_range(5, None))
    assert at_least_5.fullmatch("5") and at_least_5.fullmatch("123456")
    assert not at_least_5.fullmatch("4") and not at_least_5.fullmatch("-6")
    at_most_minus_2 = as_regex(integer_range(None, -2))
    assert at_most_minus_2.fullmatch("-2") and at_most_minus_2.fullmatch("-99999")
    assert not at_most_minus_2.fullmatch("-1") and not at_most_minus_2.fullmatch("3")


def test_bounded_integers_get_their_own_rule() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}},
    }
    grammar = schema_to_gbnf(schema, "tools")
    assert "[1-9]" in grammar


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "number", "minimum": 0},
        {"type": "integer", "multipleOf": 5},
        {"type": "array", "uniqueItems": True},
        {"type": "integer", "minimum": 5, "maximum": 4},
    ],
)
def test_what_the_grammar_cannot_enforce_is_refused(schema: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="not supported") as info:
        schema_to_gbnf(schema, "response_format")
    assert info.value.param == "response_format"
