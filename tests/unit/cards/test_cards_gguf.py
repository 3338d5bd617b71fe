"""Cards are pre-filled from the model file: GGUF general.* metadata, size, sha256."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from cloudlet.cards import build_card
from cloudlet.cards.gguf_meta import file_facts, is_gguf, read_gguf
from cloudlet.errors import SpecError


def test_bundled_smollm2_metadata(smollm2_gguf: Path) -> None:
    meta = read_gguf(smollm2_gguf)
    assert meta.license_raw == "apache-2.0"  # Hugging Face's tag, as the converter copied it
    assert meta.license == "Apache-2.0"  # normalised to SPDX
    assert meta.organization == "HuggingFaceTB"
    assert meta.basename == "smollm2"
    assert meta.size_label == "135M"
    assert meta.name == "Smollm2 135M 8k Lc100K Mix1 Ep2"
    assert meta.architecture == "llama"
    assert meta.decoder
    assert meta.quantization == "Q4_1"
    assert meta.context_length == 8192
    assert meta.languages == ("en",)
    assert 130_000_000 < meta.parameter_count < 140_000_000


def test_bundled_smollm2_file_facts(smollm2_gguf: Path) -> None:
    facts = file_facts(smollm2_gguf)
    digest = hashlib.sha256(smollm2_gguf.read_bytes()).hexdigest()
    assert facts.sha256 == digest
    assert facts.size_bytes == smollm2_gguf.stat().st_size
    assert facts.format == "gguf"
    assert facts.file_name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_card_prefilled_from_gguf_alone(make_gguf: Callable[..., Path]) -> None:
    path = make_gguf(license_="odc-by", name="Tiny Test")
    card = build_card("tiny", path)
    assert card.name == "tiny"
    assert card.title == "Tiny Test"
    assert card.producer == "Acme Labs"
    assert card.license == "ODC-By-1.0"
    assert card.architecture == "transformer decoder"
    assert card.artifact is not None
    assert card.artifact.format == "gguf"
    assert card.artifact.quantization == "F32"
    assert card.artifact.context_length == 256
    assert card.artifact.parameter_count == 32
    assert card.artifact.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # the weights are there, under the distribution licence: one Class III component
    assert [c.name for c in card.components] == ["Model parameters (Final)"]
    assert card.weights_license == "ODC-By-1.0"
    assert card.mof.class_ is None
    assert card.mof.progress[3] == 17
    assert card.provenance == ("file:Tiny-Test.gguf",)
    assert card.sources[0].title == "GGUF metadata of Tiny-Test.gguf"


def test_non_spdx_gguf_licence_is_reported_not_guessed(make_gguf: Callable[..., Path]) -> None:
    card = build_card("tiny", make_gguf(license_="other"))
    assert card.license is None
    assert card.unconfirmed == ("GGUF general.license 'other' is not an SPDX licence id.",)


def test_other_files_get_an_artifact_only(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    card = build_card("emb", path, source="file:///models/model.zip")
    assert not is_gguf(path)
    assert card.artifact is not None
    assert card.artifact.format == "zip"
    assert card.artifact.source == "file:///models/model.zip"
    assert card.components == ()


def test_corrupt_gguf_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 3)
    with pytest.raises(SpecError, match="not a readable GGUF file"):
        read_gguf(path)


def test_unreadable_gguf_still_gets_a_card(tmp_path: Path) -> None:
    """llama.cpp may load files gguf-py cannot parse; the card degrades, serving goes on."""
    path = tmp_path / "future.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 3)
    card = build_card("future", path)
    assert card.artifact is not None
    assert card.artifact.format == "gguf"
    assert card.artifact.quantization is None
    assert card.unconfirmed[0].startswith("GGUF metadata could not be read")
