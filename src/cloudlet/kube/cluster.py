"""The gateway inside a cluster (``cloudlet serve --cluster``): engine pods instead of engines.

The in-cluster gateway reads the same spec as a laptop. Each model the operator runs in
engine pods (``engine: llamacpp`` or ``vllm``) becomes a
:class:`~cloudlet.engines.cluster.ClusterEngine`, whose replicas are the model's ready pods as
the EndpointSlices list them (:func:`~cloudlet.kube.discovery.watch_ready_endpoints`); remote
models stay remote engines, as on a laptop. :class:`ClusterLink` keeps the engines' pods
current for as long as the server runs, and scales a model from zero when a request finds no
pod: it sets the Model's ``scale`` subresource to one replica (the operator does the rest),
guarded by the resourceVersion it read so it never undoes a scale-up an autoscaler made in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from cloudlet.config import Spec
from cloudlet.engines.base import Engine
from cloudlet.engines.cluster import ClusterEngine
from cloudlet.kube.client import KubeApiError, KubeClient
from cloudlet.kube.discovery import DiscoverySettings, Endpoint, watch_ready_endpoints
from cloudlet.kube.names import kube_names
from cloudlet.kube.resources import MODEL

log = logging.getLogger(__name__)
FIRST_SNAPSHOT_S = 10.0  # how long start-up waits for the first listing before serving anyway


def cluster_engines(spec: Spec, *, wake_timeout_s: float = 120.0) -> dict[str, Engine]:
    """The engines of the in-cluster gateway: pods for local models, remote ones as they are."""
    from cloudlet.engines.factory import build_engine

    return {
        model.name: (
            ClusterEngine(model, wake_timeout_s=wake_timeout_s)
            if model.engine in ("llamacpp", "vllm")
            else build_engine(model)
        )
        for model in spec.models
    }


class ClusterLink:
    """Follows the engine pods of ``engines`` (model id → engine) in ``namespace``."""

    def __init__(
        self,
        engines: Mapping[str, Engine],
        namespace: str,
        connect: Callable[[], Awaitable[KubeClient]],
        *,
        discovery: DiscoverySettings | None = None,
    ) -> None:
        self._engines = {m: e for m, e in engines.items() if isinstance(e, ClusterEngine)}
        self._names = kube_names(self._engines)  # model id → Model name (the slices' label)
        self._namespace = namespace
        self._connect = connect
        self._discovery = discovery or DiscoverySettings(namespace)
        self._snapshots = 0
        self._first = asyncio.Event()

    @property
    def snapshots(self) -> int:
        """How many changes of the ready pods have been applied (for tests and logs)."""
        return self._snapshots

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Follow the pods (and serve scale-ups) inside the ``async with``."""
        if not self._engines:
            yield
            return
        api = await self._connect()
        for model, engine in self._engines.items():
            engine.scale_up = functools.partial(self.scale_up, api, self._names[model])
        follow = asyncio.create_task(self._follow(api), name="cluster-discovery")
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_SNAPSHOT_S):
                    await self._first.wait()
            if not self._first.is_set():
                log.warning("no EndpointSlice listing yet; serving, and following as it comes")
            yield
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
            for engine in self._engines.values():
                engine.scale_up = None
            await api.close()

    async def _follow(self, api: KubeClient) -> None:
        async for snapshot in watch_ready_endpoints(api, self._discovery):
            self.apply(snapshot)

    def apply(self, snapshot: Mapping[str, tuple[Endpoint, ...]]) -> None:
        """Point every engine at its model's ready pods in ``snapshot`` (Model name → pods)."""
        for model, engine in self._engines.items():
            engine.set_urls([e.base_url for e in snapshot.get(self._names[model], ())])
        self._snapshots += 1
        self._first.set()

    async def scale_up(self, api: KubeClient, name: str) -> None:
        """Set Model ``name`` to one replica if it has none; leave any other count alone."""
        path = MODEL.path(self._namespace, name) + "/scale"
        for _ in range(3):
            scale = await api.get(path)
            if scale is None:
                log.warning("model %s: no Model resource to scale", name)
                return
            if int((scale.get("spec") or {}).get("replicas") or 0) > 0:
                return
            version = (scale.get("metadata") or {}).get("resourceVersion")
            patch = {"metadata": {"resourceVersion": version}, "spec": {"replicas": 1}}
            try:
                await api.merge_patch(path, patch)
            except KubeApiError as exc:
                if exc.status_code == 409:  # changed since we read it: read again
                    continue
                raise
            log.info("model %s: scaled from zero to one replica for a waiting request", name)
            return
