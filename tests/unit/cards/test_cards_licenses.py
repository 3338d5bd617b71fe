"""Licence names from GGUF metadata and people become SPDX ids."""

from __future__ import annotations

import pytest

from cloudlet.cards import normalize_license
from cloudlet.cards.licenses import license_terms


@pytest.mark.parametrize(
    ("raw", "spdx"),
    [
        ("apache-2.0", "Apache-2.0"),
        ("Apache-2.0", "Apache-2.0"),
        (" mit ", "MIT"),
        ("cc-by-4.0", "CC-BY-4.0"),
        ("odc-by", "ODC-By-1.0"),
        ("odbl", "ODbL-1.0"),
        ("gpl-3.0", "GPL-3.0-only"),
        ("openmdw-1.0", "OpenMDW-1.0"),
        ("mit or apache-2.0", "MIT OR Apache-2.0"),
        ("(mit OR bsd-3-clause) and isc", "(MIT OR BSD-3-Clause) AND ISC"),
        ("apache-2.0 with llvm-exception", "Apache-2.0 WITH LLVM-exception"),
        ("licenseref-custom", "LicenseRef-custom"),
    ],
)
def test_known_licences_normalise(raw: str, spdx: str) -> None:
    assert normalize_license(raw) == spdx


@pytest.mark.parametrize("raw", [None, "", "other", "llama3", "mit or other", "(mit"])
def test_unknown_or_broken_give_none(raw: str | None) -> None:
    assert normalize_license(raw) is None


def test_license_terms_skip_operators_and_exceptions() -> None:
    assert license_terms("(MIT OR Apache-2.0 WITH LLVM-exception) AND ISC") == [
        "MIT",
        "Apache-2.0",
        "ISC",
    ]
