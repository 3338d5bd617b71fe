"""A Model's children: the engine Deployment and its Service, computed from the Model alone.

Pure: the operator applies whatever this returns, so the same Model always yields the same
objects and a re-apply is a no-op. A ``llamacpp`` model runs the cloudlet image serving just that
model (its one-model spec travels in a pod-template annotation, mounted as a file through the
downward API: no extra ConfigMap to keep in step, and a changed spec rolls the pods); a ``vllm``
model runs vLLM's OpenAI server, on accelerator nodes when asked; a ``remote`` model has none.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from cloudlet.config import Spec
from cloudlet.engines.worker_process import TOKEN_ENV as WORKER_TOKEN_ENV
from cloudlet.kube.names import (
    API_VERSION,
    HTTP_PORT,
    KIND,
    MODEL_LABEL,
    SPEC_ANNOTATION,
    child_name,
    engine_selector,
    labels,
)
from cloudlet.kube.pods import (
    TMP_DIR,
    container_security_context,
    drain_lifecycle,
    pod_security_context,
    probes,
    rolling_update,
    tmp_volume,
    with_default_requests,
)
from cloudlet.kube.settings import DrainSettings, EngineSettings

Manifest = dict[str, Any]
MANAGED_BY = "cloudlet-operator"
SPEC_DIR = "/etc/cloudlet"
VLLM_PORT = 8000
_DEFAULT_REQUESTS = {
    "llamacpp": {"cpu": "1", "memory": "1Gi"},
    "vllm": {"cpu": "2", "memory": "8Gi"},
}


class InvalidModel(ValueError):
    """The Model passed the CRD's schema but cannot be run (e.g. bad llamacpp options)."""


@dataclass(frozen=True)
class Children:
    deployment: Manifest
    service: Manifest


def children(model: Mapping[str, Any], settings: EngineSettings) -> Children | None:
    """The Deployment and Service for ``model``; None for a remote model."""
    spec = model.get("spec", {})
    engine = spec.get("engine")
    if engine == "remote":
        return None
    if engine not in ("llamacpp", "vllm"):
        raise InvalidModel(f"unknown engine {engine!r}")
    meta = model["metadata"]
    name: str = meta["name"]
    namespace: str = meta["namespace"]
    owner = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    child_meta = {
        "name": child_name(name),
        "namespace": namespace,
        "labels": {**labels("engine", name, managed_by=MANAGED_BY), MODEL_LABEL: name},
        "ownerReferences": [owner],
    }
    return Children(
        deployment=_deployment(name, spec, child_meta, settings),
        service={
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": copy.deepcopy(child_meta),
            "spec": {
                "type": "ClusterIP",
                "selector": engine_selector(name),
                "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http"}],
            },
        },
    )


def engine_spec_yaml(model_id: str, spec: Mapping[str, Any], drain: DrainSettings) -> str:
    """The one-model cloudlet spec a llamacpp engine pod serves, validated here first; its
    server drains for as long as the pod's grace period leaves after the preStop pause."""
    entry = {**spec.get("options", {}), "name": model_id, "engine": "llamacpp"}
    entry["source"] = spec.get("source")
    server = {"host": "0.0.0.0", "port": HTTP_PORT, "drain_timeout_s": drain.max_stream_seconds}
    data = {"server": server, "models": [entry]}
    try:
        Spec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][2:]) or 'options'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidModel(f"spec.options is not a valid cloudlet model: {problems}") from exc
    return yaml.safe_dump(data, sort_keys=False)


def _deployment(
    name: str, spec: Mapping[str, Any], meta: Manifest, settings: EngineSettings
) -> Manifest:
    engine: str = spec["engine"]
    model_id: str = spec.get("modelName") or name
    drain_spec = spec.get("drain", {})
    drain = DrainSettings(
        pre_stop_seconds=drain_spec.get("preStopSeconds", settings.drain.pre_stop_seconds),
        max_stream_seconds=drain_spec.get("maxStreamSeconds", settings.drain.max_stream_seconds),
    )
    tmp, tmp_mount = tmp_volume()
    volumes: list[Manifest] = [tmp]
    mounts: list[Manifest] = [tmp_mount]
    annotations: dict[str, str] = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT if engine == "llamacpp" else VLLM_PORT),
        "prometheus.io/path": "/metrics",
    }
    resources = with_default_requests(spec.get("resources"), _DEFAULT_REQUESTS[engine])
    accelerator = spec.get("accelerator")
    if accelerator:
        resource_name = accelerator.get("resource", "nvidia.com/gpu")
        count = str(accelerator.get("count", 1))
        resources.setdefault("limits", {})[resource_name] = count
        resources["requests"][resource_name] = count
    if engine == "llamacpp":
        annotations[SPEC_ANNOTATION] = engine_spec_yaml(model_id, spec, drain)
        volumes.append(
            {
                "name": "spec",
                "downwardAPI": {
                    "items": [
                        {
                            "path": "cloudlet.yaml",
                            "fieldRef": {"fieldPath": f"metadata.annotations['{SPEC_ANNOTATION}']"},
                        }
                    ]
                },
            }
        )
        mounts.append({"name": "spec", "mountPath": SPEC_DIR, "readOnly": True})
        # The same `cloudlet worker` that `cloudlet serve` supervises on one machine: one
        # model, no keys or ledger of its own, answering only the gateway's token.
        container = _container(
            image=spec.get("image") or settings.image,
            args=[
                "worker",
                "--config",
                f"{SPEC_DIR}/cloudlet.yaml",
                "--log-format",
                "rich",
                *spec.get("args", []),
            ],
            port=HTTP_PORT,
            health=("/health", "/ready"),
            settings=settings,
        )
        container["env"] = [worker_token_env(settings.secret_name)]
    else:
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}})
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})  # noqa: S108 - in the pod
        source = str(spec.get("source", "")).removeprefix("hf://")
        container = _container(
            image=spec.get("image") or settings.vllm_image,
            args=[
                "--model",
                source,
                "--served-model-name",
                model_id,
                "--host",
                "0.0.0.0",
                "--port",
                str(VLLM_PORT),
                *spec.get("args", []),
            ],
            port=VLLM_PORT,
            health=("/health", "/health"),
            settings=settings,
        )
        container["env"] = [
            {"name": "HOME", "value": TMP_DIR},
            {"name": "HF_HOME", "value": f"{TMP_DIR}/huggingface"},
            {"name": "XDG_CACHE_HOME", "value": f"{TMP_DIR}/cache"},
        ]
    volume = spec.get("modelVolume")
    if volume:
        volumes.append(
            {
                "name": "models",
                "persistentVolumeClaim": {"claimName": volume["claimName"], "readOnly": True},
            }
        )
        mounts.append(
            {"name": "models", "mountPath": volume.get("mountPath", "/models"), "readOnly": True}
        )
    container["resources"] = resources
    container["lifecycle"] = drain_lifecycle(drain)
    container["volumeMounts"] = mounts
    pod_spec: Manifest = {
        "automountServiceAccountToken": False,  # an engine never talks to the API server
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": drain.grace_period_seconds,
        "containers": [container],
        "volumes": volumes,
    }
    pod_spec.update(_scheduling(spec.get("scheduling", {}), accelerator is not None))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": int(spec.get("replicas", 1)),
            "selector": {"matchLabels": engine_selector(name)},
            "strategy": rolling_update(),
            "template": {
                "metadata": {"labels": meta["labels"], "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def worker_token_env(secret_name: str) -> Manifest:
    """The token engine pods require and the gateway sends (see cloudlet.api.worker_auth)."""
    return {
        "name": WORKER_TOKEN_ENV,
        "valueFrom": {"secretKeyRef": {"name": secret_name, "key": WORKER_TOKEN_ENV}},
    }


def _container(
    *, image: str, args: list[str], port: int, health: tuple[str, str], settings: EngineSettings
) -> Manifest:
    return {
        "name": "engine",
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": args,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        **probes(health=health[0], ready=health[1], startup_seconds=1800),
        "securityContext": container_security_context(),
    }


def _scheduling(scheduling: Mapping[str, Any], accelerated: bool) -> Manifest:
    out: Manifest = {}
    if scheduling.get("nodeSelector"):
        out["nodeSelector"] = dict(scheduling["nodeSelector"])
    tolerations = list(scheduling.get("tolerations", []))
    if accelerated and not tolerations:
        # GPU nodes are commonly tainted so that only pods asking for a GPU land there.
        tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if tolerations:
        out["tolerations"] = tolerations
    if scheduling.get("affinity"):
        out["affinity"] = scheduling["affinity"]
    if scheduling.get("priorityClassName"):
        out["priorityClassName"] = scheduling["priorityClassName"]
    return out
