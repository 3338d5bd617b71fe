"""An in-process fake Kubernetes API server over real HTTP: kmock's emulator plus what it lacks.

kmock (by kopf's author) serves discovery, list/watch, create, patch and delete, and records every
request. What a real API server also does and the tests rely on is added here:

- stamping ``uid``, a rising ``resourceVersion``, ``generation`` (bumped only when ``spec``
  changes) and ``creationTimestamp``; ``generateName``;
- server-side apply (``application/apply-patch+yaml``) creating a missing object;
- the status subresource: a patch to ``/status`` changes only ``status``, a patch to the object
  never does; a patch to ``/scale`` changes only ``spec.replicas``;
- a CustomResourceDefinition becomes ``Established`` at once (the apiextensions controller).

Not emulated (checked elsewhere or played by the tests): schema validation and CEL (the tests
validate against the CRD themselves), RBAC, controllers (a test patches a Deployment's status),
garbage collection and label selectors.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal.dicts import merge_patch_dict

APPLY = "application/apply-patch+yaml"
RESOURCES: list[tuple[str, str, str, str, bool, tuple[str, ...]]] = [
    ("", "v1", "namespaces", "Namespace", False, ()),
    ("", "v1", "services", "Service", True, ("status",)),
    ("", "v1", "events", "Event", True, ()),
    ("", "v1", "serviceaccounts", "ServiceAccount", True, ()),
    ("", "v1", "configmaps", "ConfigMap", True, ()),
    ("apps", "v1", "deployments", "Deployment", True, ("status", "scale")),
    ("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, ()),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True, ()),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, ()),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("status",)),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("status",)),
    ("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject", True, ("status",)),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("status",),
    ),
    ("cloudlet.dev", "v1alpha1", "models", "Model", True, ("status", "scale")),
]
VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]


@attrs.define(kw_only=True)
class FakeKube(kmock.KubernetesEmulator):
    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for group, version, plural, kind, namespaced, subresources in RESOURCES:
            self.resources[kmock.resource(group, version, plural)] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources
            )

    # Helpers for the tests -------------------------------------------------------------------

    def stored(self, group: str, version: str, plural: str, ns: str | None, name: str) -> Any:
        """The stored object, or None."""
        key = (kmock.resource(group, version, plural), ns, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def all(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        res = kmock.resource(group, version, plural)
        return [
            copy.deepcopy(obj.raw)
            for (r, _, _), obj in list(self.objects.items())
            if r == res and not obj.deleted
        ]

    # The emulation ---------------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if resource is not None and isinstance(request.data, dict):
            if request.action == kmock.action.CREATE:
                self._stamp_new(request.data, request)
            elif request.action == kmock.action.UPDATE and request.name is not None:
                key = (resource, request.namespace, request.name)
                exists = key in self.objects and not self.objects[key].deleted
                if not exists and request.headers.get("Content-Type", "").startswith(APPLY):
                    return await self._apply_create(request)
                if exists:
                    self._shape_patch(request, self.objects[key].raw)
        return await super()._handle(request)

    def _stamp_new(self, data: dict[str, Any], request: kmock.Request) -> None:
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(next(self._versions)),
            generation=1,
            creationTimestamp=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if request.resource is not None and request.resource.plural == "customresourcedefinitions":
            data["status"] = {"conditions": [{"type": "Established", "status": "True"}]}

    async def _apply_create(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        assert request.resource is not None
        data = dict(request.data)
        data.pop("status", None)
        self._stamp_new(data, request)
        key = (request.resource, request.namespace, data["metadata"]["name"])
        async with self._lock:
            self.objects[key] = data
            raw = self.objects[key].raw
            await self._buses[request.resource].put({"type": "ADDED", "object": raw})
        return aiohttp.web.json_response(raw, status=201)

    def _shape_patch(self, request: kmock.Request, current: dict[str, Any]) -> None:
        data: dict[str, Any] = request.data
        if request.subresource == "status":
            for key in [k for k in data if k != "status"]:
                del data[key]
        elif request.subresource == "scale":
            replicas = data.get("spec", {}).get("replicas")
            data.clear()
            data["spec"] = {"replicas": replicas}
        else:
            data.pop("status", None)
        meta = data.setdefault("metadata", {})
        for fixed in ("uid", "creationTimestamp", "generation", "resourceVersion"):
            meta.pop(fixed, None)
        meta["resourceVersion"] = str(next(self._versions))
        if "spec" in data:
            merged = merge_patch_dict(current, {"spec": data["spec"]})
            if merged.get("spec") != current.get("spec"):
                meta["generation"] = int(current.get("metadata", {}).get("generation", 1)) + 1


@asynccontextmanager
async def fake_kube() -> AsyncIterator[tuple[FakeKube, str]]:
    """A running fake API server and its base URL."""
    async with FakeKube() as api, kmock.Server(api) as server:
        yield api, str(server.url).rstrip("/")
