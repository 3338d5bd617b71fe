"""JSON schema → llama.cpp grammar, with what llama-cpp-python's converter leaves out.

llama-cpp-python's ``SchemaConverter`` ignores ``minimum``/``maximum`` (its own TODO says
so), so a schema's bounds were silently not enforced: a tool argument declared as an integer
from 1 to 99 came back as 2163188. Here integer bounds become digit-range rules, and the
keywords no grammar here enforces are refused with a clear error instead of being ignored.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

from cloudlet.errors import InvalidRequest

_MAX_DIGITS = 15  # an unbounded side of an integer range: up to 10**15 - 1
# Keywords the grammar cannot enforce; accepting them would promise what the output breaks.
_UNSUPPORTED = ("multipleOf", "uniqueItems", "not", "minProperties", "maxProperties")
_NUMBER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _same_length(lo: str, hi: str) -> str:
    """GBNF for the digit strings from ``lo`` to ``hi`` (as many digits as they have)."""
    if lo == hi:
        return f'"{lo}"'
    if lo[0] == hi[0]:
        return f'"{lo[0]}" ({_same_length(lo[1:], hi[1:])})'
    rest = len(lo) - 1
    parts: list[str] = []
    start, end = int(lo[0]), int(hi[0])
    if lo[1:] != "0" * rest:
        parts.append(f'"{lo[0]}" ({_same_length(lo[1:], "9" * rest)})')
        start += 1
    tail = hi[1:] != "9" * rest
    if tail:
        end -= 1
    if start <= end:
        parts.append(f"[{start}-{end}]" + (f" [0-9]{{{rest}}}" if rest else ""))
    if tail:
        parts.append(f'"{hi[0]}" ({_same_length("0" * rest, hi[1:])})')
    return " | ".join(parts)


def _unsigned(lo: int, hi: int) -> list[str]:
    """Alternatives for the integers ``lo..hi`` (0 <= lo <= hi), without leading zeros."""
    out = []
    for n in range(len(str(lo)), len(str(hi)) + 1):
        a, b = max(lo, 10 ** (n - 1) if n > 1 else 0), min(hi, 10**n - 1)
        if a <= b:
            out.append(_same_length(str(a), str(b)))
    return out


def integer_range(lo: int | None, hi: int | None) -> str:
    """A GBNF expression for the JSON integers from ``lo`` to ``hi`` (None: unbounded)."""
    big = 10**_MAX_DIGITS - 1
    lo, hi = -big if lo is None else lo, big if hi is None else hi
    parts: list[str] = []
    if lo < 0:
        parts += [f'"-" ({alt})' for alt in _unsigned(max(1, -hi), -lo)]
    if hi >= 0:
        parts += _unsigned(max(lo, 0), hi)
    return " | ".join(f"({p})" for p in parts)


class _Converter(SchemaConverter):
    def visit(self, schema: Any, name: str) -> Any:
        if isinstance(schema, dict):
            for keyword in _UNSUPPORTED:
                if keyword in schema:
                    raise ValueError(f"the keyword {keyword!r} is not supported")
            kind = schema.get("type")
            bounded = any(k in schema for k in _NUMBER_BOUNDS)
            if kind == "number" and bounded:
                raise ValueError("bounds on a 'number' are not supported (use 'integer')")
            if kind == "integer" and bounded:
                return self._bounded_integer(schema, name)
        return super().visit(schema, name)  # type: ignore[no-untyped-call]

    def _bounded_integer(self, schema: dict[str, Any], name: str) -> Any:
        lows = [math.ceil(schema["minimum"])] if "minimum" in schema else []
        highs = [math.floor(schema["maximum"])] if "maximum" in schema else []
        if isinstance(schema.get("exclusiveMinimum"), int | float):
            lows.append(math.floor(schema["exclusiveMinimum"]) + 1)
        if isinstance(schema.get("exclusiveMaximum"), int | float):
            highs.append(math.ceil(schema["exclusiveMaximum"]) - 1)
        lo, hi = max(lows, default=None), min(highs, default=None)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"no integer lies between {lo} and {hi}")
        rule_name = name or "root"
        rule = f"({integer_range(lo, hi)}) space"
        return self._add_rule(rule_name, rule)  # type: ignore[no-untyped-call]


_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def schema_to_gbnf(schema: dict[str, Any], param: str) -> str:
    """The GBNF grammar (root rule ``root``) of the JSON values ``schema`` accepts; a 400
    naming ``param`` for a schema it cannot enforce."""
    try:
        converter = _Converter(  # type: ignore[no-untyped-call]
            prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "input")
        converter.visit(resolved, "")
        grammar = str(converter.format_grammar())  # type: ignore[no-untyped-call]
    except Exception as exc:  # the converter raises plain exceptions (and asserts)
        raise InvalidRequest(
            f"{param}: this JSON schema is not supported by the embedded engine: {exc}",
            param=param,
        ) from exc
    # llama-cpp-python's `char` lets raw control characters into strings (llama.cpp's own
    # converter excludes them): JSON forbids them, and json.loads refuses the result.
    return grammar.replace(_LOOSE_CHAR, _JSON_CHAR)
