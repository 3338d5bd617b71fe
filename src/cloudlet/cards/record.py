"""Records in the Model Openness Tool's own YAML format (``mof_schema.json``), read and written.

A record names a release, its licences by content type (``distribution``, ``code``, ``data``,
``document``) and the components it includes. A component's ``license`` follows the tool's import
rules (``ModelUpdater``): absent or null means "inherit from the release", ``unlicensed`` or an
empty string means "included without a licence". Licence names are kept exactly as written:
the tool compares them verbatim, so normalising here would classify differently from it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from cloudlet.cards.catalogue import catalogue
from cloudlet.errors import SpecError

UNLICENSED = "unlicensed"
LICENSE_TYPES = ("distribution", "code", "data", "document")
FRAMEWORK: Mapping[str, str] = MappingProxyType(
    {"name": "Model Openness Framework", "version": "1.0", "date": "2024-12-15"}
)


@dataclass(frozen=True, slots=True)
class MofLicense:
    """A release-level licence: an SPDX id (or whatever the record says) and where it lives."""

    name: str | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class MofComponent:
    """One included component. ``license`` None inherits; ``"unlicensed"`` has none."""

    name: str
    description: str | None = None
    license: str | None = None
    license_path: str | None = None
    component_path: str | None = None


@dataclass(frozen=True, slots=True)
class MofRecord:
    """A release as the tool sees it. Unset text fields are empty strings, as in its exports."""

    name: str
    producer: str = ""
    version: str = ""
    date: str | None = None
    type: str = ""
    architecture: str = ""
    origin: str = ""
    contact: str = ""
    treatment: str | None = None
    repository: str | None = None
    huggingface: str | None = None
    licenses: Mapping[str, MofLicense] = field(default_factory=lambda: MappingProxyType({}))
    components: tuple[MofComponent, ...] = ()


def load_mof_file(path: str | Path) -> MofRecord:
    """Read a tool record from YAML; every problem is a SpecError naming the file and the field."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(source, [("(file)", f"cannot be read: {exc.strerror or exc}")]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(source, [("(file)", f"not valid YAML: {exc}")]) from exc
    return parse_mof_record(data, source)


def parse_mof_record(data: Any, source: str) -> MofRecord:
    """Validate the parsed YAML of a record; unknown extra keys are allowed, as in the schema."""
    problems: list[tuple[str, str]] = []
    if not isinstance(data, Mapping):
        raise SpecError(source, [("(top level)", "expected a mapping with framework and release")])
    if not isinstance(data.get("framework"), Mapping):
        problems.append(("framework", "required mapping is missing"))
    release = data.get("release")
    if not isinstance(release, Mapping):
        problems.append(("release", "required mapping is missing"))
        raise SpecError(source, problems)
    name = _text(release.get("name"))
    if not name:
        problems.append(("release.name", "required, non-empty"))
    licenses = _licenses(release.get("license"), problems)
    components = _components(release.get("components"), problems)
    if problems:
        raise SpecError(source, problems)
    return MofRecord(
        name=name,
        producer=_text(release.get("producer")),
        version=_text(release.get("version")),
        date=_text(release.get("date")) or None,
        type=_text(release.get("type")),
        architecture=_text(release.get("architecture")),
        origin=_text(release.get("origin")),
        contact=_text(release.get("contact")),
        treatment=_text(release.get("treatment")) or None,
        repository=_text(release.get("repository")) or None,
        huggingface=_text(release.get("huggingface")) or None,
        licenses=licenses,
        components=components,
    )


def record_to_dict(record: MofRecord) -> dict[str, Any]:
    """The record as the tool exports it (``ModelSerializer::normalize``), components by weight."""
    release: dict[str, Any] = {"name": record.name, "version": record.version}
    if record.date:
        release["date"] = record.date
    for key in ("type", "architecture"):
        release[key] = getattr(record, key)
    if record.treatment:
        release["treatment"] = record.treatment
    for key in ("origin", "producer", "contact"):
        release[key] = getattr(record, key)
    for key in ("repository", "huggingface"):
        if getattr(record, key):
            release[key] = getattr(record, key)
    release["license"] = {
        kind: {"name": lic.name, "path": lic.path}
        for kind, lic in record.licenses.items()
        if lic.name or lic.path
    }
    order = {c.name: i for i, c in enumerate(catalogue().components)}
    release["components"] = [
        _component_dict(c) for c in sorted(record.components, key=lambda c: order[c.name])
    ]
    return {"framework": dict(FRAMEWORK), "release": release}


def dump_mof_yaml(record: MofRecord) -> str:
    return yaml.safe_dump(record_to_dict(record), sort_keys=False, allow_unicode=True, width=100)


def _component_dict(component: MofComponent) -> dict[str, Any]:
    out: dict[str, Any] = {"name": component.name}
    if component.description:
        out["description"] = component.description
    for key in ("license", "license_path", "component_path"):
        value = getattr(component, key)
        if value:
            out[key] = value
    return out


def _text(value: Any) -> str:
    """YAML turns ``date: 2024-06-13`` into a date and ``version: 1.0`` into a float; undo it."""
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


def _licenses(raw: Any, problems: list[tuple[str, str]]) -> Mapping[str, MofLicense]:
    if raw is None:
        problems.append(("release.license", "required mapping is missing (it may be empty)"))
        return MappingProxyType({})
    if not isinstance(raw, Mapping):
        problems.append(("release.license", "expected a mapping"))
        return MappingProxyType({})
    out: dict[str, MofLicense] = {}
    for kind, value in raw.items():
        if value is None:
            continue
        if not isinstance(value, Mapping):
            problems.append((f"release.license.{kind}", "expected a mapping with name and path"))
            continue
        out[str(kind)] = MofLicense(
            _text(value.get("name")) or None, _text(value.get("path")) or None
        )
    return MappingProxyType(out)


def _components(raw: Any, problems: list[tuple[str, str]]) -> tuple[MofComponent, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(("release.components", "expected a list"))
        return ()
    known = catalogue()
    out: dict[str, MofComponent] = {}
    for index, item in enumerate(raw):
        where = f"release.components[{index}]"
        if not isinstance(item, Mapping):
            problems.append((where, "expected a mapping with at least a name"))
            continue
        name = _text(item.get("name"))
        if not known.has_component(name):
            names = ", ".join(c.name for c in known.components)
            problems.append((f"{where}.name", f"unknown component {name!r}; one of: {names}"))
            continue
        license_ = item.get("license")
        out[name] = MofComponent(  # a repeated name replaces the earlier one, as in the tool
            name=name,
            description=_text(item.get("description")) or None,
            license=None if license_ is None else (_text(license_) or UNLICENSED),
            license_path=_text(item.get("license_path")) or None,
            component_path=_text(item.get("component_path")) or None,
        )
    return tuple(out.values())
