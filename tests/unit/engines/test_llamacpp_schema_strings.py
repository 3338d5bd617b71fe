"""Strings in schema grammars: no raw control characters (JSON forbids them)."""

from __future__ import annotations

from llama_cpp.llama_grammar import LlamaGrammar

from cloudlet.engines.llamacpp_schema import schema_to_gbnf


def test_a_schema_string_cannot_hold_a_raw_control_character() -> None:
    grammar = schema_to_gbnf({"type": "object", "properties": {"a": {"type": "string"}}}, "p")
    (char,) = [line for line in grammar.splitlines() if line.startswith("char ::=")]
    assert r"\x00-\x1F" in char  # a tool call's arguments parse with json.loads
    LlamaGrammar.from_string(grammar, verbose=False)  # and llama.cpp still compiles it
