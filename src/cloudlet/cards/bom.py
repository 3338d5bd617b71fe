"""A card as a CycloneDX 1.6 BOM: proof of what is served, for compliance tooling.

The model is a ``machine-learning-model`` component with its file's sha256, its licence, its
MOF class and per-component licences as properties, and a ``modelCard``; each dataset is a
``data`` component the model card references. cyclonedx-python-lib builds and serialises the BOM;
it has no model-card model yet, so the ``modelCard`` object is added to its JSON output as
plain JSON shaped by the 1.6 schema (``definitions.modelCard``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.output.json import JsonV1Dot6

from cloudlet.cards.model import Dataset, ModelCard

PROPERTY_PREFIX = "cloudlet:mof"
_REF = re.compile(r"[^A-Za-z0-9._-]+")


def to_cyclonedx(card: ModelCard) -> dict[str, Any]:
    """The BOM as a JSON-ready dict (CycloneDX 1.6)."""
    model_ref = f"model-{_slug(card.name)}"
    datasets = [_dataset(d, i) for i, d in enumerate(card.datasets)]
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=card.title or card.name,
        version=card.version or None,
        bom_ref=model_ref,
        description=card.description,
        supplier=OrganizationalEntity(name=card.producer) if card.producer else None,
        licenses=_licenses(card.license),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=card.artifact.sha256)]
        if card.artifact
        else None,
        external_references=_links(card),
        properties=_properties(card),
    )
    bom = Bom(components=[model, *datasets])
    bom.metadata.component = None
    data: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    for component in data.get("components", []):
        if component.get("bom-ref") == model_ref:
            component["modelCard"] = _model_card(card, model_ref, datasets)
    return data


def _model_card(card: ModelCard, model_ref: str, datasets: list[Component]) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "task": "text-generation",
        "inputs": [{"format": "text"}],
        "outputs": [{"format": "text"}],
    }
    if card.architecture:
        parameters["architectureFamily"] = card.architecture
    if card.artifact and card.artifact.architecture:
        parameters["modelArchitecture"] = card.artifact.architecture
    if datasets:
        parameters["datasets"] = [{"ref": str(d.bom_ref.value)} for d in datasets]
    out: dict[str, Any] = {"bom-ref": f"{model_ref}-card", "modelParameters": parameters}
    metrics = [
        {
            "type": e.benchmark + (f" ({e.metric})" if e.metric else ""),
            "value": f"{e.value:g}",
            **({"slice": f"{e.shots}-shot"} if e.shots is not None else {}),
        }
        for e in card.evaluation
        if e.value is not None
    ]
    if metrics:
        out["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    considerations: dict[str, Any] = {}
    if card.intended_use:
        considerations["useCases"] = [card.intended_use]
    if card.limitations:
        considerations["technicalLimitations"] = list(card.limitations)
    if considerations:
        out["considerations"] = considerations
    out["properties"] = [
        {"name": f"{PROPERTY_PREFIX}:unconfirmed", "value": text} for text in card.unconfirmed
    ] + [{"name": "cloudlet:source", "value": f"{s.title} <{s.url}>"} for s in card.sources]
    if not out["properties"]:
        del out["properties"]
    return out


def _dataset(dataset: Dataset, index: int) -> Component:
    return Component(
        type=ComponentType.DATA,
        name=dataset.name,
        bom_ref=f"dataset-{index}-{_slug(dataset.name)}",
        description=dataset.description,
        licenses=_licenses(dataset.license),
        external_references=[ExternalReference(type=ExternalReferenceType.DISTRIBUTION,
                                               url=XsUri(dataset.url))]
        if dataset.url
        else None,
        properties=[Property(name="cloudlet:dataset:role", value=dataset.role)],
    )  # fmt: skip


def _properties(card: ModelCard) -> list[Property]:
    mof = card.mof
    props = [
        Property(name=f"{PROPERTY_PREFIX}:class", value=str(mof.class_ or "unclassified")),
        Property(name=f"{PROPERTY_PREFIX}:label", value=mof.label),
    ]
    props += [
        Property(name=f"{PROPERTY_PREFIX}:progress:class-{k}", value=str(v))
        for k, v in sorted(mof.progress.items())
    ]
    for status in mof.components:
        if status.status in ("missing", "absent"):
            continue
        value = f"{status.license or 'unlicensed'} ({status.status})"
        props.append(Property(name=f"{PROPERTY_PREFIX}:component:{status.name}", value=value))
    if card.artifact:
        a = card.artifact
        facts = {"format": a.format, "file": a.file_name, "quantization": a.quantization,
                 "context_length": a.context_length, "parameters": a.parameter_count}  # fmt: skip
        props += [
            Property(name=f"cloudlet:artifact:{key}", value=str(value))
            for key, value in facts.items()
            if value is not None
        ]
    return props


def _links(card: ModelCard) -> list[ExternalReference]:
    links = []
    if card.homepage:
        links.append(ExternalReference(type=ExternalReferenceType.WEBSITE,
                                       url=XsUri(card.homepage)))  # fmt: skip
    if card.repository:
        links.append(ExternalReference(type=ExternalReferenceType.VCS,
                                       url=XsUri(card.repository)))  # fmt: skip
    for source in card.sources:
        if source.url.startswith(("http://", "https://")):
            links.append(
                ExternalReference(
                    type=ExternalReferenceType.DOCUMENTATION,
                    url=XsUri(source.url),
                    comment=source.title,
                )
            )
    return links


def _licenses(name: str | None) -> list[Any] | None:
    if not name:
        return None
    return [LicenseFactory().make_from_string(name)]


def _slug(text: str) -> str:
    return _REF.sub("-", text).strip("-").lower() or "x"
