"""Autoscalers: a CPU HPA for the gateway, and one queue-depth autoscaler per local model.

Why two signals: the gateway is a stateless proxy whose cost is CPU, which metrics-server
reports on every cluster. An engine's cost is its accelerator or its llama.cpp threads, and a
busy engine can sit at a flat CPU (a GPU-bound vLLM) or a pegged one (an idle-spinning llama.cpp),
so CPU says little; the number of requests waiting for it, which the gateway knows per model
(``cloudlet_queue_depth``), says exactly when another replica would help. The per-model HPA reads
it as an External metric (through an adapter such as prometheus-adapter); KEDA reads it straight
from Prometheus and, unlike an HPA without the HPAScaleToZero gate, can scale to zero.

Both target the Model's scale subresource, never its Deployment: the operator owns that.
"""

from __future__ import annotations

import re
from typing import Any

from cloudlet.kube.names import API_VERSION, GATEWAY_NAME, KIND, child_name, labels
from cloudlet.kube.settings import RenderSettings

Manifest = dict[str, Any]

QUEUE_METRIC = "cloudlet_queue_depth"
INFLIGHT_METRIC = "cloudlet_in_flight_requests"
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def gateway_hpa(settings: RenderSettings) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(GATEWAY_NAME, "gateway", GATEWAY_NAME, settings),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY_NAME},
            "minReplicas": max(1, settings.gateway_replicas),
            "maxReplicas": max(settings.gateway_replicas, settings.gateway_max_replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
            "behavior": _behavior(),
        },
    }


def model_autoscaler(
    model: Manifest, settings: RenderSettings
) -> tuple[Manifest | None, str | None]:
    """The HPA or ScaledObject for one rendered Model, or None (and maybe a warning)."""
    spec = model["spec"]
    low, high = spec.get("minReplicas"), spec.get("maxReplicas")
    if spec["engine"] == "remote" or low is None or high is None or low >= high:
        return None, None
    name: str = model["metadata"]["name"]
    model_id: str = spec["modelName"]
    target = int(spec.get("autoscaling", {}).get("targetQueueDepth", settings.target_queue_depth))
    if settings.autoscaler == "keda":
        return _scaled_object(name, model_id, low, high, target, settings), None
    if not _LABEL_VALUE.match(model_id):
        return None, (
            f"model {model_id!r}: not a valid label value, so no HPA can select its metric; "
            "use --autoscaler keda"
        )
    warning = None
    if low == 0:
        warning = (
            f"model {model_id!r}: an HPA cannot scale to zero without the HPAScaleToZero "
            "feature gate, so its HPA keeps 1 replica; --autoscaler keda scales to zero"
        )
    return _hpa(name, model_id, max(1, low), high, target, settings), warning


def _hpa(
    name: str, model_id: str, low: int, high: int, target: int, settings: RenderSettings
) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(child_name(name), "engine", name, settings),
        "spec": {
            "scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND, "name": name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": QUEUE_METRIC,
                            "selector": {"matchLabels": {"model": model_id}},
                        },
                        "target": {"type": "AverageValue", "averageValue": str(target)},
                    },
                }
            ],
            "behavior": _behavior(),
        },
    }


def _scaled_object(
    name: str, model_id: str, low: int, high: int, target: int, settings: RenderSettings
) -> Manifest:
    quoted = model_id.replace("\\", "\\\\").replace('"', '\\"')
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(child_name(name), "engine", name, settings),
        "spec": {
            "scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND, "name": name},
            "minReplicaCount": low,
            "maxReplicaCount": high,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": [
                {
                    "type": "prometheus",
                    "name": "queue",
                    "metadata": {
                        "serverAddress": settings.prometheus_url,
                        "query": f'sum({QUEUE_METRIC}{{model="{quoted}"}}) or vector(0)',
                        "threshold": str(target),
                        "activationThreshold": "0",
                    },
                },
                {
                    # Keeps a replica while streams are in flight, even with nothing queued.
                    "type": "prometheus",
                    "name": "inflight",
                    "metadata": {
                        "serverAddress": settings.prometheus_url,
                        "query": f'sum({INFLIGHT_METRIC}{{model="{quoted}"}}) or vector(0)',
                        "threshold": "1000000",
                        "activationThreshold": "0",
                    },
                },
            ],
        },
    }


def _behavior() -> Manifest:
    """Scale up at once (a queue is already waiting), down slowly (reloading a model is dear)."""
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }


def _meta(name: str, component: str, instance: str, settings: RenderSettings) -> Manifest:
    return {"name": name, "namespace": settings.namespace, "labels": labels(component, instance)}
