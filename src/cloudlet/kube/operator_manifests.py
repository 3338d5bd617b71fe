"""The operator's own objects: ServiceAccount, a namespaced Role and RoleBinding, a Deployment.

One replica with the ``Recreate`` strategy: kopf's peering is not a lease, so two operators
during a rolling update could both reconcile the same Model. The Role is namespaced and names
exactly what the reconciler touches; kopf runs with peering and cluster scanning off, so it needs
no cluster-wide rights.
"""

from __future__ import annotations

from typing import Any

from cloudlet.kube.names import GROUP, OPERATOR_NAME, PLURAL, labels, selector
from cloudlet.kube.pods import (
    container_security_context,
    http_probe,
    pod_security_context,
    tmp_volume,
)
from cloudlet.kube.settings import RenderSettings

Manifest = dict[str, Any]

LIVENESS_PORT = 8080


def operator_rules() -> list[Manifest]:
    """What the operator may do, and nothing more."""
    return [
        {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch"]},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        {
            "apiGroups": [""],
            "resources": ["services"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        },
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]


def operator_manifests(settings: RenderSettings) -> list[Manifest]:
    meta = {
        "name": OPERATOR_NAME,
        "namespace": settings.namespace,
        "labels": labels("operator", OPERATOR_NAME),
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": operator_rules(),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": OPERATOR_NAME,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": OPERATOR_NAME, "namespace": settings.namespace}
            ],
        },
        _deployment(meta, settings),
    ]


def _deployment(meta: Manifest, settings: RenderSettings) -> Manifest:
    tmp, tmp_mount = tmp_volume()
    container: Manifest = {
        "name": "operator",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            "operator",
            "--engine-image",
            settings.image,
            "--liveness",
            f"0.0.0.0:{LIVENESS_PORT}",
        ],
        "env": [
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            }
        ],
        "ports": [{"name": "http", "containerPort": LIVENESS_PORT, "protocol": "TCP"}],
        "livenessProbe": {
            **http_probe("/healthz", period=20, failures=3),
            "initialDelaySeconds": 10,
        },
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": container_security_context(),
        "volumeMounts": [tmp_mount],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector("operator", OPERATOR_NAME)},
            "template": {
                "metadata": {"labels": labels("operator", OPERATOR_NAME)},
                "spec": {
                    "serviceAccountName": OPERATOR_NAME,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": [tmp],
                },
            },
        },
    }
