"""``cloudlet deploy --apply``: server-side apply of the rendered manifests, in order.

Server-side apply under one field manager makes a re-run converge instead of conflict, and lets
the HPA keep owning the replica counts the manifests leave out. A CustomResourceDefinition must be
``Established`` before objects of its kind are accepted, so the apply waits for that (bounded)
before going on to the Models.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from cloudlet.kube.client import KubeApiError, KubeClient
from cloudlet.kube.names import FIELD_MANAGER_DEPLOY
from cloudlet.kube.resources import KINDS, kind_of

Manifest = Mapping[str, Any]
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


def established(crd: Mapping[str, Any] | None) -> bool:
    conditions = (crd or {}).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


async def apply_manifests(
    api: KubeClient,
    manifests: Iterable[Manifest],
    *,
    field_manager: str = FIELD_MANAGER_DEPLOY,
    crd_timeout: float = 60.0,
    poll: float = 0.5,
) -> AsyncIterator[str]:
    """Apply each manifest; yield ``kind/name`` as each is applied (kubectl's way)."""
    loop = asyncio.get_running_loop()
    for manifest in manifests:
        kind_of(manifest)  # refuse an unknown kind before sending anything for it
        applied = await api.apply(manifest, field_manager=field_manager)
        key = (str(manifest["apiVersion"]), str(manifest["kind"]))
        yield f"{manifest['kind'].lower()}/{manifest['metadata']['name']}"
        if key == CRD:
            path = KINDS[CRD].path(name=manifest["metadata"]["name"])
            deadline = loop.time() + crd_timeout
            while not established(applied):
                if loop.time() > deadline:
                    raise KubeApiError(
                        0, "Timeout", f"CRD {manifest['metadata']['name']} not Established"
                    )
                await asyncio.sleep(poll)
                applied = await api.get(path) or {}
