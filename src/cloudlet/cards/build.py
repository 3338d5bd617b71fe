"""Build a model's card from what is known about it, most specific last.

1. the model file: GGUF ``general.*`` metadata (licence normalised to SPDX), size, sha256,
   quantization — so every served model has a card, even one nobody wrote;
2. the card cloudlet ships for that file, if any (matched by sha256 or spec source);
3. the spec's ``card.mof_file``, a record in the Model Openness Tool's format (kept verbatim);
4. the spec's inline ``card:`` fields.

A later layer replaces what it sets: scalar fields and lists wholesale, licences per kind,
MOF components per name. The result is classified once and frozen.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

from cloudlet.cards.bundled import bundled_card, match_bundled
from cloudlet.cards.catalogue import catalogue
from cloudlet.cards.classify import classify
from cloudlet.cards.gguf_meta import file_facts, is_gguf, read_gguf
from cloudlet.cards.licenses import normalize_license
from cloudlet.cards.model import Artifact, Dataset, EvaluationResult, ModelCard, Source
from cloudlet.cards.model import to_mof_record as _to_record
from cloudlet.cards.record import UNLICENSED, MofComponent, MofLicense, MofRecord, load_mof_file
from cloudlet.config.cards import CardSpec
from cloudlet.errors import SpecError

_SCALARS = ("title", "version", "producer", "description", "date", "type", "architecture",
            "treatment", "base_model", "homepage", "repository", "intended_use")  # fmt: skip
_PARAMS = "Model parameters (Final)"


def build_card(
    name: str,
    gguf_path: Path | None = None,
    spec: CardSpec | None = None,
    *,
    source: str | None = None,
) -> ModelCard:
    """The card of the model served as ``name``.

    ``gguf_path`` is the resolved model file (any format; GGUF metadata is read when it is one),
    ``source`` the spec's ``source`` string (matches bundled cards and is shown in the card).
    Raises SpecError for an unreadable ``mof_file`` or an unknown ``bundled`` id.
    """
    state: dict[str, Any] = {"name": name, "licenses": {}, "components": {}, "provenance": []}
    sha256 = None
    if gguf_path is not None:
        sha256 = _apply_file(state, gguf_path, source)
    bundled = _find_bundled(name, spec, sha256, source)
    if bundled is not None:
        _apply_spec(state, bundled.card)
        state["provenance"].append(f"bundled:{bundled.id}")
    if spec is not None and spec.mof_file is not None:
        _apply_record(state, load_mof_file(spec.mof_file))
        state["provenance"].append(f"mof_file:{spec.mof_file}")
    if spec is not None:
        _apply_spec(state, spec)
        if spec.model_fields_set - {"mof_file", "bundled"}:
            state["provenance"].append("spec")
    return _freeze(state)


def _find_bundled(name: str, spec: CardSpec | None, sha256: str | None, source: str | None) -> Any:
    if spec is not None and spec.bundled is not None:
        try:
            return bundled_card(spec.bundled)
        except LookupError as exc:
            raise SpecError(f"the card of model {name!r}", [("card.bundled", str(exc))]) from exc
    return match_bundled(sha256=sha256, source=source)


def _apply_file(state: dict[str, Any], path: Path, source: str | None) -> str:
    facts = file_facts(path)
    artifact: dict[str, Any] = {
        "format": facts.format,
        "file_name": facts.file_name,
        "size_bytes": facts.size_bytes,
        "sha256": facts.sha256,
        "source": source,
    }
    state["provenance"].append(f"file:{facts.file_name}")
    meta = None
    if facts.format == "gguf" and is_gguf(path):
        try:
            meta = read_gguf(path)
        except SpecError as exc:  # llama.cpp may load files gguf-py cannot parse: degrade
            state["unconfirmed"] = (f"GGUF metadata could not be read: {exc.problems[0][1]}",)
    if meta is not None:
        artifact.update(
            quantization=meta.quantization,
            quantization_version=meta.quantization_version,
            architecture=meta.architecture,
            context_length=meta.context_length,
            parameter_count=meta.parameter_count,
            gguf_version=meta.gguf_version,
        )
        _set(state, "title", meta.name)
        _set(state, "producer", meta.organization)
        _set(state, "version", meta.version or meta.size_label)
        _set(state, "description", meta.description)
        _set(state, "homepage", meta.url or meta.repo_url)
        _set(state, "architecture", "transformer decoder" if meta.decoder else None)
        if meta.languages:
            state["languages"] = meta.languages
        if meta.base_models:
            base = meta.base_models[0]
            state["base_model"] = (
                f"{base.organization}/{base.name}" if base.organization else base.name
            )
        if meta.datasets:
            state["datasets"] = tuple(Dataset(d.name, d.url) for d in meta.datasets)
        if meta.license_raw is not None:
            state["licenses"]["distribution"] = MofLicense(meta.license, meta.license_link)
            if meta.license is None:
                named = f" ({meta.license_name})" if meta.license_name else ""
                state["unconfirmed"] = (
                    f"GGUF general.license {meta.license_raw!r}{named} is not an SPDX licence id.",
                )
        state["components"][_PARAMS] = MofComponent(
            _PARAMS, component_path=meta.url or meta.repo_url or source or facts.file_name
        )
        state["sources"] = (
            Source(f"GGUF metadata of {facts.file_name}", source or facts.file_name,
                   "identity, licence, architecture and quantization from general.* keys"),
        )  # fmt: skip
    state["artifact"] = Artifact(**artifact)
    return facts.sha256


def _apply_record(state: dict[str, Any], record: MofRecord) -> None:
    """A tool record: its text kept exactly, so it classifies as the tool would."""
    state["title"] = record.name
    for key in ("producer", "version", "date", "type", "architecture", "treatment", "repository"):
        _set(state, key, getattr(record, key) or None)
    _set(state, "homepage", record.huggingface)
    state["licenses"].update(record.licenses)
    state["components"].update({c.name: c for c in record.components})


def _apply_spec(state: dict[str, Any], spec: CardSpec) -> None:
    for key in _SCALARS:
        _set(state, key, getattr(spec, key))
    if spec.languages is not None:
        state["languages"] = tuple(spec.languages)
    if spec.licenses is not None:
        for kind, lic in spec.licenses.items():
            state["licenses"][kind] = MofLicense(_spdx(lic.name), lic.path)
    if spec.license is not None:
        old = state["licenses"].get("distribution") or MofLicense()
        state["licenses"]["distribution"] = MofLicense(_spdx(spec.license), old.path)
    for c in spec.components or []:
        license_ = UNLICENSED if c.license == UNLICENSED else _spdx(c.license)
        state["components"][c.name] = MofComponent(
            c.name, c.description, license_, c.license_path, c.location
        )
    if spec.datasets is not None:
        state["datasets"] = tuple(
            Dataset(d.name, d.url, _spdx(d.license), d.role, d.description) for d in spec.datasets
        )
    if spec.evaluation is not None:
        state["evaluation"] = tuple(
            EvaluationResult(e.benchmark, e.metric, e.value, e.shots, e.source, e.note)
            for e in spec.evaluation
        )
    if spec.limitations is not None:
        state["limitations"] = tuple(spec.limitations)
    if spec.sources is not None:
        state["sources"] = tuple(Source(s.title, s.url, s.supports) for s in spec.sources)
    if spec.unconfirmed is not None:
        state["unconfirmed"] = tuple(spec.unconfirmed)


def _freeze(state: dict[str, Any]) -> ModelCard:
    order = {c.name: i for i, c in enumerate(catalogue().components)}
    state["components"] = tuple(sorted(state["components"].values(), key=lambda c: order[c.name]))
    state["licenses"] = MappingProxyType(dict(state["licenses"]))
    state["provenance"] = tuple(state["provenance"])
    record = _to_record(
        name=state.get("title") or state["name"],
        producer=state.get("producer") or "",
        version=state.get("version") or "",
        date=state.get("date"),
        type=state.get("type"),
        architecture=state.get("architecture"),
        treatment=state.get("treatment"),
        homepage=state.get("homepage"),
        repository=state.get("repository"),
        licenses=state["licenses"],
        components=state["components"],
    )
    state.setdefault("producer", "")
    state.setdefault("version", "")
    return ModelCard(mof=classify(record), **state)


def _set(state: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        state[key] = value


def _spdx(value: str | None) -> str | None:
    """SPDX form when the name is known, else the name as written (it then classifies as not
    open, which is what an unknown licence should do)."""
    if value is None:
        return None
    return normalize_license(value) or value
