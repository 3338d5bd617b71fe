"""The spec's ``card:`` block (per model) and ``policy:`` block (top level), as pydantic models.

Validation only, no I/O: ``mof_file`` is a path that :func:`cloudlet.cards.build_card` reads,
and licence names are kept as written here and normalised to SPDX when the card is built, so
that an error message can quote what the user typed.

    models:
      - name: smollm2
        card:
          mof_file: cards/smollm2.yml          # a record in the Model Openness Tool's format
          components:                          # inline overrides win over the file
            - {name: Research paper, license: CC-BY-4.0}
    policy:
      openness: {min_mof_class: 3, licenses: {deny: [CC-BY-NC-4.0]}, on_violation: refuse}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ComponentName = Literal[
    "Model architecture",
    "Data preprocessing code",
    "Training code",
    "Inference code",
    "Evaluation code",
    "Supporting libraries and tools",
    "Model parameters (Final)",
    "Model parameters (Intermediate)",
    "Datasets",
    "Evaluation data",
    "Model metadata",
    "Sample model outputs",
    "Model card",
    "Data card",
    "Technical report",
    "Research paper",
    "Evaluation results",
]
LicenseKind = Literal["distribution", "code", "data", "document"]
ReleaseType = Literal[
    "language", "vision", "image", "audio", "video", "3d", "code", "multimodal", "other"
]
Architecture = Literal[
    "transformer",
    "transformer decoder",
    "transformer encoder-decoder",
    "decoder",
    "encoder",
    "diffusion",
    "RNN",
    "CNN",
    "LSTM",
    "NeRF",
    "hybrid",
    "undisclosed",
    "other",
]
Treatment = Literal["pre-trained", "instruct fine-tuned", "chat fine-tuned"]
DatasetRole = Literal["pre-training", "fine-tuning", "preference", "evaluation", "other"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LicenseSpec(_Strict):
    """A licence and where its text is; ``license: Apache-2.0`` is short for ``{name: ...}``."""

    name: str | None = None
    path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class ComponentSpec(_Strict):
    """One MOF component the model includes. ``license: unlicensed`` = included, no licence;
    no ``license`` = the release's licence for its content type applies."""

    name: ComponentName
    license: str | None = None
    license_path: str | None = None
    location: str | None = Field(None, description="where the component is (URL or path)")
    description: str | None = None


class DatasetSpec(_Strict):
    name: str
    url: str | None = None
    license: str | None = None
    role: DatasetRole = "pre-training"
    description: str | None = None


class EvaluationSpec(_Strict):
    benchmark: str
    metric: str | None = None
    value: float | None = Field(None, description="None when the score is not known")
    shots: int | None = Field(None, ge=0)
    source: str | None = None
    note: str | None = None


class SourceSpec(_Strict):
    """A citation: what was read (``url``) and which claims of the card it supports."""

    title: str
    url: str
    supports: str | None = None


class CardSpec(_Strict):
    """A model's transparency card. Every field is optional; a field that is set replaces what
    the GGUF metadata, the bundled card or ``mof_file`` said (lists are replaced, not merged,
    except ``components``, which replace per component name)."""

    mof_file: Path | None = Field(None, description="a record in the Model Openness Tool's YAML")
    bundled: str | None = Field(None, description="id of a card shipped with cloudlet")
    title: str | None = None
    version: str | None = None
    producer: str | None = None
    description: str | None = None
    date: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    type: ReleaseType | None = None
    architecture: Architecture | None = None
    treatment: Treatment | None = None
    base_model: str | None = None
    languages: list[str] | None = None
    homepage: str | None = None
    repository: str | None = None
    license: str | None = Field(None, description="distribution licence (SPDX)")
    licenses: dict[LicenseKind, LicenseSpec] | None = None
    components: list[ComponentSpec] | None = None
    datasets: list[DatasetSpec] | None = None
    evaluation: list[EvaluationSpec] | None = None
    intended_use: str | None = None
    limitations: list[str] | None = None
    sources: list[SourceSpec] | None = None
    unconfirmed: list[str] | None = None

    @field_validator("components")
    @classmethod
    def _unique_components(cls, value: list[ComponentSpec] | None) -> list[ComponentSpec] | None:
        names = [c.name for c in value or []]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"component {name!r} appears twice")
        return value

    def resolved(self, base_dir: Path) -> CardSpec:
        """A relative ``mof_file`` is relative to the spec file that names it, not to the cwd."""
        if self.mof_file is None or self.mof_file.is_absolute():
            return self
        return self.model_copy(update={"mof_file": (base_dir / self.mof_file).resolve()})


class LicenseRules(_Strict):
    """``allow``: if not empty, the model's licence must be one of these; ``deny``: never these.
    SPDX ids; Hugging Face forms such as ``apache-2.0`` are accepted and normalised."""

    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)

    @field_validator("allow", "deny")
    @classmethod
    def _strip(cls, value: list[str]) -> list[str]:
        # Normalised to SPDX ids where the policy is applied (cloudlet.cards.policy): the
        # licence table belongs to the cards layer, above this one.
        return [v.strip() for v in value]


class OpennessPolicy(_Strict):
    """``min_mof_class``: 3 admits Class III, II and I; 1 admits only Class I (the most open).
    ``on_violation``: ``refuse`` keeps the model from serving, ``warn`` only logs."""

    min_mof_class: Literal[1, 2, 3] | None = None
    licenses: LicenseRules = Field(default_factory=LicenseRules)
    on_violation: Literal["refuse", "warn"] = "refuse"


class PolicySpec(_Strict):
    """The spec's top-level ``policy:`` block."""

    openness: OpennessPolicy | None = None
