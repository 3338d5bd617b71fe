"""Transparency cards: how open each served model is, enforced by policy, exported as a BOM.

The Model Openness Framework (LF AI & Data, arXiv 2403.13784) grades openness by 17 components
and their licences; its Model Openness Tool is the reference implementation, whose rules,
catalogue and licence lists this package follows so that classes and percentages agree with it.

    card = build_card("smollm2", gguf_path, spec.card, source=spec.source)
    card.mof.class_, card.mof.progress         # 1|2|3|None, {1: int, 2: int, 3: int}
    check_policy(card, policy.openness)        # [Violation(...)], the caller refuses or warns
    enforce(card, policy.openness)             # raises ModelNotPermitted (403), returns warnings
    to_cyclonedx(card); to_mof_yaml(card); card_summary(card); card_to_dict(card)
    classify(load_mof_file("record.yml"))      # a record in the tool's own format

Core layer: no web framework, no llama.cpp, no engines; model files are given as paths.
"""

from typing import Any

from cloudlet.cards.build import build_card
from cloudlet.cards.classify import ComponentStatus, MofResult, classify
from cloudlet.cards.licenses import normalize_license
from cloudlet.cards.model import Artifact, Dataset, EvaluationResult, ModelCard, Source
from cloudlet.cards.policy import Violation, check_policy, enforce
from cloudlet.cards.record import MofComponent, MofLicense, MofRecord, load_mof_file
from cloudlet.cards.serialize import card_summary, card_to_dict, to_mof_yaml
from cloudlet.config.cards import CardSpec, LicenseRules, OpennessPolicy, PolicySpec
from cloudlet.errors import ModelNotPermitted

__all__ = [
    "Artifact",
    "CardSpec",
    "ComponentStatus",
    "Dataset",
    "EvaluationResult",
    "LicenseRules",
    "ModelCard",
    "ModelNotPermitted",
    "MofComponent",
    "MofLicense",
    "MofRecord",
    "MofResult",
    "OpennessPolicy",
    "PolicySpec",
    "Source",
    "Violation",
    "build_card",
    "card_summary",
    "card_to_dict",
    "check_policy",
    "classify",
    "enforce",
    "load_mof_file",
    "normalize_license",
    "to_cyclonedx",
    "to_mof_yaml",
]


def to_cyclonedx(card: ModelCard) -> dict[str, Any]:
    """The card as a CycloneDX 1.6 BOM (JSON-ready dict); see :mod:`cloudlet.cards.bom`.

    Imported on first use: the CycloneDX library is needed to export cards, not to serve.
    """
    from cloudlet.cards.bom import to_cyclonedx as build_bom

    return build_bom(card)
