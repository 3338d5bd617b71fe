"""A model served by engine pods in a Kubernetes cluster, as the in-cluster gateway sees it.

The gateway speaks to each ready engine pod directly (a replica per pod, balanced and failed
over like any remote engine's URLs) instead of through the engine Service's one virtual IP, so
that least-outstanding or prefix-affinity balancing sees the real pods. Which pods are ready is
not known here: the cluster layer (:mod:`cloudlet.kube.cluster`) follows the EndpointSlices and
calls :meth:`ClusterEngine.set_urls` with every change; ``replicas_version`` tells the gateway's
target to pick the new set up.

Scale from zero: with no ready pod, :meth:`ClusterEngine.wake` asks the cluster layer (through
the ``scale_up`` hook) to scale the model to one replica and holds the request until a pod is
ready or ``wake_timeout_s`` has passed. The requests it holds are this model's queue as the
gateway reports it; requests already sent to a pod are that pod's to report, so summing
``cloudlet_queue_depth`` over gateway and engine pods counts each waiting request once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from cloudlet.config import ModelSpec
from cloudlet.domain import (
    EmbeddingResult,
    EngineStats,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    ModelInfo,
)
from cloudlet.engines.openai_remote import OpenAIEngine
from cloudlet.engines.openai_replica import OpenAIReplica
from cloudlet.engines.worker_process import TOKEN_ENV
from cloudlet.errors import EngineUnavailable

log = logging.getLogger(__name__)
ScaleUp = Callable[[], Awaitable[None]]


def _info(spec: ModelSpec, engine: str) -> ModelInfo:
    return ModelInfo(
        id=ModelId(spec.name),
        kind=spec.kind,
        engine=engine,
        context_length=spec.context,
        created=int(time.time()),
        source=spec.source,
        capabilities=spec.capabilities,
    )


class PodReplica(OpenAIReplica):
    """One engine pod. The pod queues for itself (no semaphore here); the gateway estimates
    the pod's queue wait from what it has sent there, for local-first spill-over."""

    def __init__(self, engine: ClusterEngine, url: str, slots: int) -> None:
        super().__init__(engine, 0, url)
        self.url = url
        self.name = f"pod {url} of model {engine.spec.name!r}"
        self._pod_slots = slots

    def stats(self) -> EngineStats:
        base = super().stats()
        waiting = max(0, self.outstanding - self._pod_slots)
        wait = 0.0
        if waiting or self.outstanding >= self._pod_slots:
            wait = (waiting + 1) * self._job_seconds / self._pod_slots
        return EngineStats(
            queue_depth=waiting,
            running=min(self.outstanding, self._pod_slots),
            capacity=self._pod_slots,
            estimated_queue_wait_s=wait,
            requests_total=base.requests_total,
        )


class ClusterEngine(OpenAIEngine):
    """A :class:`~cloudlet.engines.base.ChatEngine` (or embedding engine) over engine pods."""

    def __init__(self, spec: ModelSpec, *, wake_timeout_s: float = 120.0) -> None:
        # Engine pods serve the model under its own name, each queueing for itself, and
        # answer only the token the gateway shares with them (CLOUDLET_WORKER_TOKEN).
        update: dict[str, object] = {"parallel": None}
        if os.environ.get(TOKEN_ENV):
            update["api_key"] = "${" + TOKEN_ENV + "}"
        super().__init__(spec.model_copy(update=update))
        self._slots = spec.parallel or 1
        self._info = _info(spec, f"{spec.engine} (cluster)")
        self.wake_timeout_s = wake_timeout_s
        self.scale_up: ScaleUp | None = None
        self._pods: list[PodReplica] = []
        self._retired: list[PodReplica] = []
        self._version = 0
        self._changed = asyncio.Event()
        self._held = 0
        self._gone_requests = 0  # requests of pods that left, so the total never goes down
        self._started = False
        self._scaling: asyncio.Task[None] | None = None

    @property
    def replicas(self) -> Sequence[PodReplica]:
        return self._pods

    @property
    def replicas_version(self) -> int:
        """Changes whenever the set of pods does."""
        return self._version

    async def start(self) -> None:
        await super().start()  # headers and timeouts; the pods so far get connections below
        self._started = True
        for pod in self._pods:
            self._connect(pod)

    def _connect(self, pod: PodReplica) -> None:
        if pod.session is None and self._started:
            new_session = self._new_session
            pod.session = new_session() if new_session is not None else None

    async def close(self) -> None:
        self._started = False
        if self._scaling is not None:
            self._scaling.cancel()
        self._replicas = [*self._pods, *self._retired]
        self._pods, self._retired = [], []
        await super().close()

    def set_urls(self, urls: Sequence[str]) -> None:
        """The base URLs (``http://ip:port/v1``) of the pods ready now."""
        wanted = list(dict.fromkeys(urls))
        if wanted == [p.url for p in self._pods]:
            return
        current = {p.url: p for p in self._pods}
        pods = [
            current.pop(url) if url in current else PodReplica(self, url, self._slots)
            for url in wanted
        ]
        for pod in pods:
            self._connect(pod)
        # A pod that left the set may still be finishing streams (it drains before it exits):
        # its connections close once it has nothing in flight.
        self._retired.extend(current.values())
        self._gone_requests += sum(p.stats().requests_total for p in current.values())
        self._pods = pods
        self._replicas = list(pods)
        self._version += 1
        self._changed.set()
        self._changed = asyncio.Event()
        asyncio.get_running_loop().create_task(self._close_retired())
        log.info("model %s: %d ready pod(s)", self.spec.name, len(pods))

    async def _close_retired(self) -> None:
        idle = [p for p in self._retired if p.outstanding == 0]
        self._retired = [p for p in self._retired if p.outstanding > 0]
        for pod in idle:
            session, pod.session = pod.session, None
            if session is not None:
                await session.close()

    async def wake(self, *, wait: bool) -> bool:
        """True once a pod is ready. Without one, ask for a scale-up; with ``wait``, hold the
        caller until a pod is ready or ``wake_timeout_s`` has passed."""
        if self._pods:
            return True
        self._ask_for_scale_up()
        if not wait:
            return False
        self._held += 1
        try:
            async with asyncio.timeout(self.wake_timeout_s):
                while not self._pods:
                    await self._changed.wait()
        except TimeoutError:
            return False
        finally:
            self._held -= 1
        return True

    def _ask_for_scale_up(self) -> None:
        if self.scale_up is None or (self._scaling is not None and not self._scaling.done()):
            return
        self._scaling = asyncio.get_running_loop().create_task(
            self._scale_up(self.scale_up), name=f"scale-up-{self.spec.name}"
        )

    async def _scale_up(self, scale_up: ScaleUp) -> None:
        try:
            await scale_up()
        except Exception:  # the held requests time out with a clear 503; the log says why
            log.exception("model %s: could not scale up from zero", self.spec.name)

    def stats(self) -> EngineStats:
        """What the gateway holds for this model (see the module docstring)."""
        pods = [p.stats() for p in self._pods]
        return EngineStats(
            queue_depth=self._held,
            running=0,
            capacity=sum(p.capacity for p in pods),
            estimated_queue_wait_s=min((p.estimated_queue_wait_s for p in pods), default=0.0),
            requests_total=self._gone_requests + sum(p.requests_total for p in pods),
        )


class ClusterOnly:
    """An ``engine: vllm`` model outside a cluster: listed, and refused with a clear reason.

    The spec stays the same file on a laptop and in a cluster, so `cloudlet serve` keeps such
    a model (a route may fail over past it) instead of rejecting the whole spec.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self._info = _info(spec, f"{spec.engine} (cluster only)")
        self._why = (
            f"model {spec.name!r} uses engine {spec.engine}, which runs on GPU nodes of a "
            "Kubernetes cluster (cloudlet deploy); to reach a vLLM server from here, list it "
            "as engine: openai with its url"
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    async def start(self) -> None:
        log.warning("%s", self._why)

    async def close(self) -> None:
        return None

    def stats(self) -> EngineStats:
        return EngineStats(capacity=0)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        raise EngineUnavailable(self._why)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        raise EngineUnavailable(self._why)
