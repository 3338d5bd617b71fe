"""The transparency card of one served model: immutable, built once at start-up.

A card answers the compliance questions of the design (which model is this, exactly which file,
under which licences, how open by the Model Openness Framework, trained on what, evaluated how,
meant for what) and says where each answer comes from (``sources``) and what could not be
confirmed (``unconfirmed``), so that nobody mistakes a gap for a fact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cloudlet.cards.classify import MofResult
from cloudlet.cards.record import MofComponent, MofLicense, MofRecord


@dataclass(frozen=True, slots=True)
class Artifact:
    """The exact file served."""

    format: str
    file_name: str
    size_bytes: int
    sha256: str
    source: str | None = None
    quantization: str | None = None
    quantization_version: int | None = None
    architecture: str | None = None
    context_length: int | None = None
    parameter_count: int | None = None
    gguf_version: int | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    url: str | None = None
    license: str | None = None
    role: str = "pre-training"
    description: str | None = None


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    benchmark: str
    metric: str | None = None
    value: float | None = None
    shots: int | None = None
    source: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    title: str
    url: str
    supports: str | None = None


@dataclass(frozen=True, slots=True)
class ModelCard:
    """``name`` is the id clients send; ``title`` the model's own name. ``licenses`` holds the
    release licences by kind (distribution, code, data, document); ``components`` the MOF
    components declared, and ``mof`` their classification."""

    name: str
    mof: MofResult
    title: str | None = None
    version: str = ""
    producer: str = ""
    description: str | None = None
    date: str | None = None
    type: str | None = None
    architecture: str | None = None
    treatment: str | None = None
    base_model: str | None = None
    languages: tuple[str, ...] = ()
    homepage: str | None = None
    repository: str | None = None
    artifact: Artifact | None = None
    licenses: Mapping[str, MofLicense] = field(default_factory=lambda: MappingProxyType({}))
    components: tuple[MofComponent, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    evaluation: tuple[EvaluationResult, ...] = ()
    intended_use: str | None = None
    limitations: tuple[str, ...] = ()
    sources: tuple[Source, ...] = ()
    unconfirmed: tuple[str, ...] = ()
    provenance: tuple[str, ...] = ()

    @property
    def license(self) -> str | None:
        """The distribution licence: what the model as released is offered under."""
        distribution = self.licenses.get("distribution")
        return distribution.name if distribution is not None else None

    @property
    def weights_license(self) -> str | None:
        """The licence of the final parameters (the file served), resolved as MOF resolves it."""
        for status in self.mof.components:
            if status.name == "Model parameters (Final)" and status.status != "missing":
                return status.license
        return self.license

    def mof_record(self) -> MofRecord:
        """The card as a Model Openness Tool record (what ``classify`` and the MOF export use)."""
        return to_mof_record(
            name=self.title or self.name,
            producer=self.producer,
            version=self.version,
            date=self.date,
            type=self.type,
            architecture=self.architecture,
            treatment=self.treatment,
            homepage=self.homepage,
            repository=self.repository,
            licenses=self.licenses,
            components=self.components,
        )


def to_mof_record(
    *,
    name: str,
    producer: str,
    version: str,
    date: str | None,
    type: str | None,
    architecture: str | None,
    treatment: str | None,
    homepage: str | None,
    repository: str | None,
    licenses: Mapping[str, MofLicense],
    components: tuple[MofComponent, ...],
) -> MofRecord:
    """Shared by the card and the builder, which classifies before the card exists."""
    return MofRecord(
        name=name,
        producer=producer,
        version=version,
        date=date,
        type=type or "",
        architecture=architecture or "",
        treatment=treatment,
        repository=repository,
        huggingface=homepage,
        licenses=MappingProxyType(dict(licenses)),
        components=components,
    )
