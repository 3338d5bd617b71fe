"""The remote engine: any OpenAI-compatible server (vLLM, Ollama, llama-server, TGI, a cloud).

One :class:`OpenAIEngine` per served model owns its HTTP clients (created in ``start``,
closed in ``close``) and one :class:`OpenAIReplica` per upstream URL. The gateway
balances, retries and breaks circuits over ``replicas``; the engine itself only speaks HTTP.

``generate`` returns once the first token has arrived (or the upstream failed), so every
failure before the first token is an admission error the gateway can fail over on, and the
client never sees it. The rest of the stream is passed through chunk by chunk; a failure after
the first token is raised from the stream as :class:`~cloudlet.errors.UpstreamError`.

The API key and ``${VAR}`` header values are read from the environment in ``start`` and live
only in request headers: no log line, error message or stats value holds them. Each replica
has its own aiohttp session (see :mod:`cloudlet.engines.openai_clients` for why aiohttp).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence

import aiohttp

from cloudlet import __version__
from cloudlet.config import ModelSpec
from cloudlet.config.remote import ENV_REF
from cloudlet.domain import (
    EmbeddingResult,
    EngineStats,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    ModelInfo,
)
from cloudlet.engines.openai_clients import session_factory
from cloudlet.engines.openai_replica import OpenAIReplica
from cloudlet.errors import EngineUnavailable


class OpenAIEngine:
    """A :class:`~cloudlet.engines.base.ChatEngine` or ``EmbeddingEngine`` over HTTP."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        environ: Mapping[str, str] | None = None,
        uds: str | None = None,
        bound_max_tokens: bool = True,
    ) -> None:
        """``environ`` resolves ``${VAR}`` references (default: the process environment);
        ``uds`` connects through a Unix socket (a local worker); ``bound_max_tokens`` fills in
        ``max_tokens`` for requests without one, bounding a remote's cost to what was
        reserved (a local worker bounds it by the context itself)."""
        self.spec = spec
        self._environ = environ
        self._uds = uds
        self.bound_max_tokens = bound_max_tokens
        self._info = ModelInfo(
            id=ModelId(spec.name),
            kind=spec.kind,
            engine="openai",
            context_length=spec.context,
            created=int(time.time()),
            owned_by="cloud" if spec.cloud else "cloudlet",
            capabilities=spec.capabilities,
        )
        self.upstream_model = spec.upstream_model or spec.name
        self.post_headers: dict[str, str] = {}
        self.get_headers: dict[str, str] = {}
        self._replicas = [OpenAIReplica(self, i, url) for i, url in enumerate(spec.replica_urls)]
        self._new_session: Callable[[], aiohttp.ClientSession] | None = None  # set by start

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def replicas(self) -> Sequence[OpenAIReplica]:
        return self._replicas

    async def start(self) -> None:
        headers = {"Accept": "application/json, text/event-stream"}
        headers.update({k: self._resolve(v, f"headers.{k}") for k, v in self.spec.headers.items()})
        if self.spec.api_key is not None:
            headers["Authorization"] = "Bearer " + self._resolve(self.spec.api_key, "api_key")
        # Every request carries these; identity encoding lets the stream be read as sent.
        self.post_headers = {
            "User-Agent": f"cloudlet/{__version__}",
            "Accept-Encoding": "identity",
            **headers,
            "Content-Type": "application/json",
        }
        self.get_headers = {"User-Agent": f"cloudlet/{__version__}", **headers}
        t = self.spec.timeouts
        self._new_session = session_factory(
            uds=self._uds, limit=self.spec.parallel or 256, connect_s=t.connect_s, read_s=t.read_s
        )
        for replica in self._replicas:
            replica.session = self._new_session()

    def _resolve(self, value: str, field: str) -> str:
        env = os.environ if self._environ is None else self._environ

        def lookup(match: object) -> str:
            name = match.group(1)  # type: ignore[attr-defined]
            if name not in env:
                raise EngineUnavailable(
                    f"model {self.spec.name!r}: {field} refers to ${{{name}}}, "
                    "which is not set in the environment"
                )
            return env[name]

        return ENV_REF.sub(lookup, value)

    async def close(self) -> None:
        for replica in self._replicas:
            session, replica.session = replica.session, None
            if session is not None:
                await session.close()

    def stats(self) -> EngineStats:
        parts = [r.stats() for r in self._replicas]
        return EngineStats(
            queue_depth=sum(p.queue_depth for p in parts),
            running=sum(p.running for p in parts),
            capacity=sum(p.capacity for p in parts),
            estimated_queue_wait_s=min((p.estimated_queue_wait_s for p in parts), default=0.0),
            requests_total=sum(p.requests_total for p in parts),
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        """Without the gateway: the least busy replica, no failover."""
        return await self._least_busy().generate(request)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        return await self._least_busy().embed(texts)

    def _least_busy(self) -> OpenAIReplica:
        return min(self._replicas, key=lambda r: r.outstanding)
