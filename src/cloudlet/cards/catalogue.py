"""The Model Openness Framework's component catalogue and licence lists, as the tool ships them.

Classification must agree with the Model Openness Tool (MOT), so its data is used as is: the 17
components of ``mof.settings.yml``, and the licence table the tool builds at install time by
importing ``licenses.json`` (the SPDX list) and then ``mof-licenses.json`` (its per-type lists),
the second overwriting every field of an entry with the same id. That overwrite matters: an id
listed in ``mof-licenses.json`` without ``isFsfLibre`` loses the flag it had in the SPDX list.

The files are package data (``data/mof/``), read once on first use, never at import time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal, cast

import yaml

ContentType = Literal["code", "data", "document"]
MofClass = Literal[1, 2, 3]
MOF_CLASSES: tuple[MofClass, ...] = (1, 2, 3)

#: The tool's ``LicenseHandler::OPEN_DATA_LICENSES``: open for data whatever the SPDX flags say.
OPEN_DATA_LICENSES: frozenset[str] = frozenset(
    {
        "CC0-1.0",
        "CC-BY-1.0",
        "CC-BY-2.0",
        "CC-BY-2.5",
        "CC-BY-2.5-AU",
        "CC-BY-3.0",
        "CC-BY-3.0-AT",
        "CC-BY-3.0-AU",
        "CC-BY-3.0-DE",
        "CC-BY-3.0-IGO",
        "CC-BY-3.0-NL",
        "CC-BY-3.0-US",
        "CC-BY-4.0",
        "CC-BY-SA-1.0",
        "CC-BY-SA-2.0",
        "CC-BY-SA-2.0-UK",
        "CC-BY-SA-2.1-JP",
        "CC-BY-SA-2.5",
        "CC-BY-SA-3.0",
        "CC-BY-SA-3.0-AT",
        "CC-BY-SA-4.0",
        "CDLA-Permissive-1.0",
        "CDLA-Permissive-2.0",
        "CDLA-Sharing-1.0",
        "ODC-PDDL-1.0",
        "ODC-By-1.0",
        "ODbL-1.0",
        "GFDL-1.3",
        "OGL-Canada-2.0",
        "OGL-UK-2.0",
        "OGL-UK-3.0",
    }
)
#: The tool's ``LicenseHandler::OPEN_LICENSES``: open for every content type.
OPEN_LICENSES: frozenset[str] = frozenset({"OpenMDW-1.0"})

TECHNICAL_REPORT = "Technical report"
RESEARCH_PAPER = "Research paper"

_DATA = "data/mof"


@dataclass(frozen=True, slots=True)
class Component:
    """One of the 17 MOF components: what it is, its content type and the class that needs it."""

    id: int
    name: str
    description: str
    content_type: ContentType
    mof_class: MofClass
    required: bool
    weight: int


@dataclass(frozen=True, slots=True)
class LicenseInfo:
    """One licence as the tool stores it after both imports."""

    id: str
    name: str
    osi_approved: bool
    fsf_libre: bool
    content_types: frozenset[str]
    reference: str | None


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Components (in the tool's display order, by weight) and the licence table."""

    components: tuple[Component, ...]
    licenses: Mapping[str, LicenseInfo]
    license_list_version: str

    def component(self, name: str) -> Component:
        """The component called exactly ``name``; KeyError otherwise."""
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)

    def has_component(self, name: str) -> bool:
        return any(c.name == name for c in self.components)

    def required(self, mof_class: int) -> tuple[Component, ...]:
        """Components the given class itself requires (not the cumulative set)."""
        return tuple(c for c in self.components if c.mof_class == mof_class and c.required)

    def optional(self, mof_class: int) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.mof_class == mof_class and not c.required)

    def is_open(self, license_id: str) -> bool:
        """The tool's ``isOpenSourceLicense``: exact id, OSI or FSF flag, open data, OpenMDW."""
        info = self.licenses.get(license_id)
        return (
            (info is not None and (info.osi_approved or info.fsf_libre))
            or license_id in OPEN_DATA_LICENSES
            or license_id in OPEN_LICENSES
        )

    def is_type_appropriate(self, license_id: str, content_type: str) -> bool:
        """Whether the tool lists the licence for this content type (a warning, not a gate)."""
        info = self.licenses.get(license_id)
        return info is not None and content_type in info.content_types


@cache
def catalogue() -> Catalogue:
    """Load the shipped MOT data once per process."""
    settings = yaml.safe_load(_read_text("mof.settings.yml"))
    components = tuple(
        sorted((_component(raw) for raw in settings["components"]), key=lambda c: c.weight)
    )
    table: dict[str, LicenseInfo] = {}
    version = ""
    for file_name in ("licenses.json", "mof-licenses.json"):
        data = json.loads(_read_text(file_name))
        version = version or str(data.get("licenseListVersion", ""))
        for raw in data["licenses"]:
            info = _license(raw)
            table[info.id] = info
    return Catalogue(components, MappingProxyType(table), version)


def _read_text(name: str) -> str:
    return resources.files("cloudlet.cards").joinpath(_DATA, name).read_text(encoding="utf-8")


def _component(raw: Mapping[str, Any]) -> Component:
    return Component(
        id=int(raw["id"]),
        name=str(raw["name"]),
        description=str(raw["description"]),
        content_type=cast(ContentType, raw["content_type"]),
        mof_class=cast(MofClass, int(raw["class"])),
        required=bool(raw["required"]),
        weight=int(raw["weight"]),
    )


def _license(raw: Mapping[str, Any]) -> LicenseInfo:
    content = raw.get("ContentType") or []
    types = frozenset([content] if isinstance(content, str) else [str(c) for c in content])
    return LicenseInfo(
        id=str(raw["licenseId"]),
        name=str(raw.get("name", raw["licenseId"])),
        osi_approved=bool(raw.get("isOsiApproved") or False),
        fsf_libre=bool(raw.get("isFsfLibre") or False),
        content_types=types,
        reference=raw.get("reference"),
    )
