"""Cards as plain data: the full JSON card, the short summary for ``/v1/models``, the MOF YAML.

JSON shapes are part of the API (``GET /v1/models/{id}/card``, ``cloudlet card --format json``),
so they are built here explicitly rather than by dumping dataclasses: renaming a field in the
model must not silently change the wire.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from cloudlet.cards.model import ModelCard
from cloudlet.cards.record import dump_mof_yaml


def card_summary(card: ModelCard) -> dict[str, Any]:
    """What each ``/v1/models`` entry carries: MOF class and progress, and the licence."""
    return {
        "mof_class": card.mof.class_,
        "mof_label": card.mof.label,
        "mof_progress": {str(k): v for k, v in card.mof.progress.items()},
        "license": card.license,
    }


def card_to_dict(card: ModelCard) -> dict[str, Any]:
    """The full card, for the API and the CLI's JSON output."""
    declared = {c.name: c for c in card.components}
    components = []
    for status in card.mof.components:
        own = declared.get(status.name)
        components.append(
            {
                "name": status.name,
                "mof_class": status.mof_class,
                "content_type": status.content_type,
                "required": status.required,
                "status": status.status,
                "license": status.license,
                "type_appropriate": status.type_appropriate,
                "location": own.component_path if own else None,
                "license_path": own.license_path if own else None,
                "description": own.description if own else None,
            }
        )
    return {
        "object": "model.card",
        "id": card.name,
        "identity": {
            "title": card.title,
            "version": card.version,
            "producer": card.producer,
            "description": card.description,
            "date": card.date,
            "type": card.type,
            "architecture": card.architecture,
            "treatment": card.treatment,
            "base_model": card.base_model,
            "languages": list(card.languages),
            "homepage": card.homepage,
            "repository": card.repository,
        },
        "artifact": asdict(card.artifact) if card.artifact else None,
        "licenses": {
            kind: {"name": lic.name, "path": lic.path} for kind, lic in card.licenses.items()
        },
        "mof": {
            **card.mof.to_dict(),
            "percent": {str(k): v for k, v in card.mof.percent.items()},
            "not_type_appropriate": list(card.mof.not_type_appropriate),
            "components": components,
        },
        "datasets": [asdict(d) for d in card.datasets],
        "evaluation": [asdict(e) for e in card.evaluation],
        "intended_use": card.intended_use,
        "limitations": list(card.limitations),
        "sources": [asdict(s) for s in card.sources],
        "unconfirmed": list(card.unconfirmed),
        "provenance": list(card.provenance),
    }


def to_mof_yaml(card: ModelCard) -> str:
    """The card as a Model Openness Tool record (valid against ``mof_schema.json``)."""
    return dump_mof_yaml(card.mof_record())
