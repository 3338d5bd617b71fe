"""Which engine pods can take a request right now, per model, from EndpointSlices.

The gateway balances across a model's ready pods itself (prefix affinity, queue depth) instead of
going through the engine Service's single virtual IP, so it needs the pods' addresses. The
EndpointSlice controller already keeps them: each engine Service carries the ``cloudlet.dev/model``
label, EndpointSlices copy their Service's labels, and an endpoint's ``ready`` condition is the
pod's readiness (false while it drains). So: list and watch the slices with that label, and fold
the events into an immutable table.

The folding (:class:`EndpointTable`) is pure; :func:`watch_ready_endpoints` is the loop around it
that lists, watches from the list's resourceVersion, re-watches when the server ends a stream,
relists when the version has expired (410) and retries after API errors. It yields a new snapshot
(Kubernetes model name → ready endpoints) whenever the ready set changes. Map a spec model id to
its Kubernetes name with :func:`cloudlet.kube.names.kube_name`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cloudlet.kube.client import KubeApiError, KubeClient
from cloudlet.kube.names import MODEL_LABEL
from cloudlet.kube.resources import ENDPOINT_SLICE

log = logging.getLogger(__name__)
Snapshot = Mapping[str, tuple["Endpoint", ...]]


@dataclass(frozen=True, order=True)
class Endpoint:
    """One ready engine pod."""

    address: str
    port: int
    pod: str | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/v1"


def slice_endpoints(obj: Mapping[str, Any]) -> tuple[str | None, tuple[Endpoint, ...]]:
    """(model, ready endpoints) of one EndpointSlice; model is None for a slice not ours."""
    model = obj.get("metadata", {}).get("labels", {}).get(MODEL_LABEL)
    ports = obj.get("ports") or []
    port = next((p for p in ports if p.get("name") == "http"), ports[0] if ports else None)
    if not model or port is None or port.get("port") is None:
        return (model or None), ()
    ready = []
    for endpoint in obj.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        # The API says a missing `ready` means ready; a terminating pod is never a target.
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        addresses = endpoint.get("addresses") or []
        if addresses:
            pod = (endpoint.get("targetRef") or {}).get("name")
            ready.append(Endpoint(addresses[0], int(port["port"]), pod))
    return model, tuple(sorted(set(ready)))


@dataclass(frozen=True)
class EndpointTable:
    """EndpointSlice name → (model, ready endpoints); a model may span several slices."""

    slices: Mapping[str, tuple[str, tuple[Endpoint, ...]]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def from_items(cls, items: Iterable[Mapping[str, Any]]) -> EndpointTable:
        table = cls()
        for item in items:
            table = table.apply("ADDED", item)
        return table

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> EndpointTable:
        name = obj.get("metadata", {}).get("name")
        if not name:
            return self
        slices = dict(self.slices)
        model, endpoints = slice_endpoints(obj)
        if event_type == "DELETED" or model is None:
            slices.pop(name, None)
        else:
            slices[name] = (model, endpoints)
        return EndpointTable(MappingProxyType(slices))

    def by_model(self) -> dict[str, tuple[Endpoint, ...]]:
        merged: dict[str, set[Endpoint]] = {}
        for model, endpoints in self.slices.values():
            merged.setdefault(model, set()).update(endpoints)
        return {model: tuple(sorted(eps)) for model, eps in sorted(merged.items())}


@dataclass(frozen=True)
class DiscoverySettings:
    namespace: str
    label_selector: str = MODEL_LABEL  # "has the label"
    watch_timeout_seconds: int = 300
    retry_seconds: float = 2.0


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


async def watch_ready_endpoints(
    api: KubeClient, settings: DiscoverySettings
) -> AsyncIterator[dict[str, tuple[Endpoint, ...]]]:
    """Yield the ready endpoints per model now, and again after every change; runs until
    cancelled. API errors are logged and retried after ``retry_seconds``."""
    path = ENDPOINT_SLICE.path(settings.namespace)
    last: dict[str, tuple[Endpoint, ...]] | None = None
    while True:
        try:
            listing = await api.list(path, label_selector=settings.label_selector)
            table = EndpointTable.from_items(listing.get("items") or [])
            version = listing.get("metadata", {}).get("resourceVersion")
            if table.by_model() != last:
                last = table.by_model()
                yield last
            while True:
                async for event in api.watch(
                    path,
                    resource_version=version,
                    label_selector=settings.label_selector,
                    timeout_seconds=settings.watch_timeout_seconds,
                ):
                    table, version = _fold(table, version, event)
                    if table.by_model() != last:
                        last = table.by_model()
                        yield last
        except _Expired:
            continue
        except KubeApiError as exc:
            if exc.status_code == 410:
                continue
            log.warning("EndpointSlice discovery: %s; retrying", exc.message)
            await asyncio.sleep(settings.retry_seconds)


def _fold(
    table: EndpointTable, version: str | None, event: Mapping[str, Any]
) -> tuple[EndpointTable, str | None]:
    kind = event.get("type", "")
    obj = event.get("object") or {}
    if kind == "ERROR":
        if obj.get("code") == 410:
            raise _Expired
        raise KubeApiError(
            int(obj.get("code") or 0), str(obj.get("reason")), str(obj.get("message"))
        )
    version = obj.get("metadata", {}).get("resourceVersion") or version
    if kind == "BOOKMARK":
        return table, version
    return table.apply(kind, obj), version
