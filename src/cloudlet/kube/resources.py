"""REST paths of the kinds cloudlet reads and writes.

A fixed table rather than API discovery: cloudlet only ever touches these kinds, a table needs no
round trip, and a Model can be applied right after its CRD without waiting for discovery caches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cloudlet.kube.names import API_VERSION, KIND, PLURAL


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


KINDS: Mapping[tuple[str, str], Kind] = MappingProxyType(
    {
        (av, kind): Kind(av, plural, namespaced)
        for av, kind, plural, namespaced in [
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                False,
            ),
            ("v1", "ServiceAccount", "serviceaccounts", True),
            ("v1", "ConfigMap", "configmaps", True),
            ("v1", "Service", "services", True),
            ("v1", "Event", "events", True),
            ("rbac.authorization.k8s.io/v1", "Role", "roles", True),
            ("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
            ("apps/v1", "Deployment", "deployments", True),
            ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
            ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True),
            ("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True),
            ("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True),
            ("keda.sh/v1alpha1", "ScaledObject", "scaledobjects", True),
            ("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors", True),
            (API_VERSION, KIND, PLURAL, True),
        ]
    }
)

MODEL = KINDS[(API_VERSION, KIND)]
DEPLOYMENT = KINDS[("apps/v1", "Deployment")]
SERVICE = KINDS[("v1", "Service")]
ENDPOINT_SLICE = KINDS[("discovery.k8s.io/v1", "EndpointSlice")]


def kind_of(manifest: Mapping[str, Any]) -> Kind:
    key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
    try:
        return KINDS[key]
    except KeyError:
        raise ValueError(f"cloudlet does not know how to apply {key[1]} {key[0]}") from None


def object_path(manifest: Mapping[str, Any]) -> str:
    meta = manifest.get("metadata", {})
    return kind_of(manifest).path(meta.get("namespace"), meta["name"])
