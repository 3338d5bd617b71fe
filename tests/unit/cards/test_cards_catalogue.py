"""The shipped MOT data loads as the tool loads it."""

from __future__ import annotations

from typing import get_args

from cloudlet.cards.catalogue import catalogue
from cloudlet.config.cards import ComponentName


def test_seventeen_components_in_the_tools_order() -> None:
    cat = catalogue()
    assert len(cat.components) == 17
    assert cat.components[0].name == "Model architecture"  # lowest weight first
    assert cat.components[-1].name == "Evaluation results"
    assert [len(cat.required(k)) for k in (1, 2, 3)] == [4, 4, 6]


def test_spec_literal_lists_the_same_components() -> None:
    assert set(get_args(ComponentName)) == {c.name for c in catalogue().components}


def test_openness_by_the_tools_rules() -> None:
    cat = catalogue()
    assert cat.is_open("Apache-2.0")  # OSI
    assert cat.is_open("Apache-1.0")  # FSF libre, not OSI
    assert cat.is_open("CC-BY-SA-3.0")  # neither flag, but an open-data licence
    assert cat.is_open("OpenMDW-1.0")  # only in mof-licenses.json, open by name
    assert not cat.is_open("CC-BY-NC-4.0")
    assert not cat.is_open("apache-2.0")  # ids are compared exactly


def test_later_import_overrides_content_type() -> None:
    """CC0-1.0 is listed for data, then for document; the tool keeps the last one."""
    cat = catalogue()
    assert cat.is_type_appropriate("CC0-1.0", "document")
    assert not cat.is_type_appropriate("CC0-1.0", "data")
    assert cat.is_type_appropriate("Apache-2.0", "code")
    assert cat.is_type_appropriate("Apache-2.0", "document")
    assert not cat.is_type_appropriate("GPL-3.0-only", "code")  # SPDX list has no types
