"""Licence names from the wild (GGUF metadata, Hugging Face tags, people) turned into SPDX ids.

Hugging Face writes lower-case ids (``apache-2.0``, ``odc-by``) and GGUF converters copy them into
``general.license``; cards, policies and BOMs want SPDX (``Apache-2.0``, ``ODC-By-1.0``).
``license-expression`` knows the SPDX list, its case-insensitive forms and the deprecated ids;
the MOT licence table adds ids it lacks (``OpenMDW-1.0``); a short table covers Hugging Face's
own short names. Expressions (``MIT OR Apache-2.0``) are normalised term by term.

Records in the tool's own format are *not* normalised: the tool compares names verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

from license_expression import ExpressionError, Licensing, get_spdx_licensing

from cloudlet.cards.catalogue import catalogue

#: Hugging Face licence tags that are not SPDX ids themselves, with their SPDX equivalent.
HF_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "odc-by": "ODC-By-1.0",
        "odbl": "ODbL-1.0",
        "pddl": "PDDL-1.0",
        "c-uda": "C-UDA-1.0",
        "openmdw": "OpenMDW-1.0",
    }
)
_OPERATORS = frozenset({"AND", "OR", "WITH"})
_TOKEN = re.compile(r"(\s+|\(|\))")


def normalize_license(raw: str | None) -> str | None:
    """The SPDX expression for ``raw``, or None when any part of it is not a known licence.

    ``apache-2.0`` → ``Apache-2.0``; ``odc-by`` → ``ODC-By-1.0``; ``mit or apache-2.0`` →
    ``MIT OR Apache-2.0``; ``LicenseRef-*`` is kept; ``other``, ``llama3`` or "" give None.
    """
    if raw is None or not raw.strip():
        return None
    parts: list[str] = []
    for token in _TOKEN.split(raw.strip()):
        if not token or token.isspace():
            continue
        if token in ("(", ")"):
            parts.append(token)
        elif token.upper() in _OPERATORS:
            parts.append(token.upper())
        else:
            spdx = spdx_id(token)
            if spdx is None:
                return None
            parts.append(spdx)
    if len(parts) == 1:
        return parts[0]
    text = " ".join(parts).replace("( ", "(").replace(" )", ")")
    return text if _parses(text) else None


@cache
def spdx_id(token: str) -> str | None:
    """The SPDX id (or exception id) for one licence token, None when unknown."""
    alias = HF_ALIASES.get(token.lower())
    if alias is not None:
        return alias
    if token.lower().startswith("licenseref-"):
        return "LicenseRef-" + token[len("licenseref-") :]
    licensing = spdx_licensing()
    try:
        parsed = licensing.parse(token)
    except ExpressionError:
        return None
    if parsed is not None and not licensing.unknown_license_keys(parsed):
        return str(parsed)  # canonical case; deprecated ids become current (GPL-3.0-only)
    by_lower = {key.lower(): key for key in catalogue().licenses}
    return by_lower.get(token.lower())


def license_terms(expression: str) -> list[str]:
    """The licence ids an expression mentions, in order (exceptions after WITH excluded)."""
    out: list[str] = []
    skip_next = False
    for token in _TOKEN.split(expression):
        if not token or token.isspace() or token in ("(", ")"):
            continue
        upper = token.upper()
        if upper in _OPERATORS:
            skip_next = upper == "WITH"
            continue
        if not skip_next:
            out.append(token)
        skip_next = False
    return out


@cache
def spdx_licensing() -> Licensing:
    """license-expression's SPDX licensing, built once (building it takes tens of ms)."""
    return get_spdx_licensing()


def _parses(text: str) -> bool:
    try:
        spdx_licensing().parse(text, validate=False)
    except ExpressionError:
        return False
    return True
