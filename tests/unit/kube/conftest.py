"""Shared helpers for the kube tests: offline manifest validation and spec stand-ins."""

from __future__ import annotations

from typing import Any, Literal

import kubernetes_validate
import pytest
from pydantic import BaseModel, ConfigDict

from cloudlet.config.spec import ServerSpec

#: Two Kubernetes minors, far apart: some fields exist only from a given minor on.
KUBE_VERSIONS = ("1.30.0", "1.35.0")
#: Custom resources: kubernetes-validate has no schema for them (checked against the CRD).
CUSTOM_KINDS = {"Model", "ScaledObject"}


def validate_strict(manifest: dict[str, Any]) -> None:
    """kubernetes-validate --strict against every version in KUBE_VERSIONS (raises on error)."""
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


class RemoteModelStandIn(BaseModel):
    """The remote-engine model fields the spec is growing (engine: openai, url, api_key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    engine: Literal["openai"] = "openai"
    url: str | None = None
    urls: list[str] | None = None
    api_key: str | None = None
    cloud: bool = False


class OtherEngineStandIn(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    engine: str = "tgi"
    source: str = "x"


class SpecStandIn(BaseModel):
    """A spec with such models, for the parts of rendering that take any pydantic spec."""

    model_config = ConfigDict(frozen=True)
    server: ServerSpec = ServerSpec()
    models: list[Any] = []


@pytest.fixture
def remote_spec() -> SpecStandIn:
    return SpecStandIn(
        models=[
            RemoteModelStandIn(
                name="mistral-small",
                url="https://cloud.example/v1",
                api_key="${MISTRAL_API_KEY}",
                cloud=True,
            )
        ]
    )
