"""The gateway in a cluster: the same ``cloudlet serve``, reading the same spec from a ConfigMap.

Rendered objects: ServiceAccount, Role and RoleBinding (read EndpointSlices and Models, scale
Models from zero: nothing else), the ConfigMap holding the spec, the Deployment, its Service,
a PodDisruptionBudget and (in :mod:`cloudlet.kube.autoscale`) an HPA.

The spec in the ConfigMap is the validated spec re-dumped, with the server bound to all
interfaces on the pod's port, and every secret left as the ``${VAR}`` reference the user wrote:
the values reach the pod as environment variables from a Secret, never through a manifest.
"""

from __future__ import annotations

import hashlib
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from cloudlet.engines.worker_process import TOKEN_ENV as WORKER_TOKEN_ENV
from cloudlet.kube.engine import worker_token_env
from cloudlet.kube.model_cr import referenced_vars, secret_var
from cloudlet.kube.names import GATEWAY_NAME, GROUP, HTTP_PORT, PLURAL, labels, selector
from cloudlet.kube.pods import (
    container_security_context,
    drain_lifecycle,
    pod_security_context,
    probes,
    rolling_update,
    tmp_volume,
)
from cloudlet.kube.settings import RenderSettings

Manifest = dict[str, Any]

SPEC_CONFIGMAP = "cloudlet-spec"
SPEC_DIR = "/etc/cloudlet"
SPEC_FILE = "cloudlet.yaml"
ADMIN_KEY_ENV = "CLOUDLET_ADMIN_KEY"
_SENSITIVE = frozenset({"api_key", "apikey", "token", "password", "secret"})
_LITERAL = "write it as ${VARIABLE}: a literal secret would be written into a ConfigMap"


def cluster_spec(spec: BaseModel) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The spec as the in-cluster gateway loads it, and problems (literal secrets) if any."""
    problems: list[tuple[str, str]] = []
    data = _plain(spec.model_dump(mode="python", exclude_defaults=True), "", problems)
    server = data.setdefault("server", {})
    server.update({"host": "0.0.0.0", "port": HTTP_PORT})
    return data, problems


def _plain(value: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            where = f"{path}.{key}".lstrip(".")
            if str(key).lower() in _SENSITIVE and isinstance(item, str) and not secret_var(item):
                problems.append((where, _LITERAL))
            out[key] = _plain(item, where, problems)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{path}[{i}]", problems) for i, item in enumerate(value)]
    if isinstance(value, SecretStr):
        if secret_var(value) is None:
            problems.append((path, _LITERAL))
            return "<redacted>"
        return value.get_secret_value()
    return to_jsonable_python(value)


def gateway_manifests(spec_data: dict[str, Any], settings: RenderSettings) -> list[Manifest]:
    text = yaml.safe_dump(spec_data, sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    env_vars = sorted(referenced_vars(spec_data))
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(GATEWAY_NAME, settings),
        },
        _role(settings),
        _role_binding(GATEWAY_NAME, settings),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(SPEC_CONFIGMAP, settings),
            "data": {SPEC_FILE: text},
        },
        _deployment(digest, env_vars, settings),
        _engine_network_policy(settings),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(GATEWAY_NAME, settings),
            "spec": {
                "type": "ClusterIP",
                "selector": selector("gateway", GATEWAY_NAME),
                "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http"}],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(GATEWAY_NAME, settings),
            "spec": {
                # maxUnavailable 1, not minAvailable: a node drain can always evict one pod.
                "maxUnavailable": 1,
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
                "selector": {"matchLabels": selector("gateway", GATEWAY_NAME)},
            },
        },
    ]


def _role(settings: RenderSettings) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(GATEWAY_NAME, settings),
        "rules": [
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
            {
                "apiGroups": [GROUP],
                "resources": [f"{PLURAL}/scale"],
                "verbs": ["get", "patch", "update"],
            },
        ],
    }


def _role_binding(name: str, settings: RenderSettings) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, settings),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": settings.namespace}],
    }


def _deployment(digest: str, env_vars: list[str], settings: RenderSettings) -> Manifest:
    tmp, tmp_mount = tmp_volume()
    env: list[Manifest] = [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    env += [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": settings.secret_name, "key": var}}}
        for var in env_vars
        if var not in (WORKER_TOKEN_ENV, ADMIN_KEY_ENV)
    ]
    env.append(worker_token_env(settings.secret_name))  # engine pods answer only this token
    env.append(  # the admin API (keys, usage); a gateway off loopback needs a way in
        {
            "name": ADMIN_KEY_ENV,
            "valueFrom": {"secretKeyRef": {"name": settings.secret_name, "key": ADMIN_KEY_ENV}},
        }
    )
    container: Manifest = {
        "name": "gateway",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["serve", "--config", f"{SPEC_DIR}/{SPEC_FILE}", "--cluster"],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": env,
        **probes(health="/health", ready="/ready", startup_seconds=600),
        "lifecycle": drain_lifecycle(settings.drain),
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "4Gi"}},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}, tmp_mount],
    }
    pod_labels = labels("gateway", GATEWAY_NAME)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(GATEWAY_NAME, settings),
        "spec": {
            # No replicas: the HPA owns the count, and a re-apply must not reset it.
            "selector": {"matchLabels": selector("gateway", GATEWAY_NAME)},
            "strategy": rolling_update(),
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        f"{GROUP}/spec-sha256": digest,  # a new spec rolls the pods
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "serviceAccountName": GATEWAY_NAME,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": settings.drain.grace_period_seconds,
                    "containers": [container],
                    "volumes": [{"name": "spec", "configMap": {"name": SPEC_CONFIGMAP}}, tmp],
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector("gateway", GATEWAY_NAME)},
                        }
                    ],
                },
            },
        },
    }


def _engine_network_policy(settings: RenderSettings) -> Manifest:
    """Engine pods take connections from the gateway pods only (their token is the second
    lock): nothing else in the cluster reaches a model past the gateway's keys and ledger."""
    engines = {"app.kubernetes.io/name": "cloudlet", "app.kubernetes.io/component": "engine"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta("cloudlet-engines", settings),
        "spec": {
            "podSelector": {"matchLabels": engines},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": selector("gateway", GATEWAY_NAME)}}],
                    "ports": [{"protocol": "TCP", "port": HTTP_PORT}],
                }
            ],
        },
    }


def _meta(name: str, settings: RenderSettings) -> Manifest:
    return {
        "name": name,
        "namespace": settings.namespace,
        "labels": labels("gateway", GATEWAY_NAME),
    }
