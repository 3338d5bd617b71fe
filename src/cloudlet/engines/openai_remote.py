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
lends out single-connection clients (see :mod:`cloudlet.engines.openai_clients` for why).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence

import httpx

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
from cloudlet.engines.openai_clients import TransportPool
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
        self.post_headers = httpx.Headers()
        self.get_headers = httpx.Headers()
        self.timeouts: dict[str, float | None] = {}
        self._replicas = [OpenAIReplica(self, i, url) for i, url in enumerate(spec.replica_urls)]
        self._new_pool: Callable[[], TransportPool] | None = None  # set by start

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
        t = self.spec.timeouts
        # Each timeout set costs an anyio cancel scope around every socket call: writes (a
        # small request body) and waits for a pooled connection are left unbounded.
        timeout = httpx.Timeout(None, connect=t.connect_s, read=t.read_s)
        # Every request carries these; identity encoding lets the stream be read raw.
        self.post_headers = httpx.Headers(
            {
                "User-Agent": f"cloudlet/{__version__}",
                "Accept-Encoding": "identity",
                **headers,
                "Content-Type": "application/json",
            }
        )
        self.timeouts = timeout.as_dict()
        self.get_headers = httpx.Headers({"User-Agent": f"cloudlet/{__version__}", **headers})
        tls = httpx.create_ssl_context()  # one for all connections: loading CA certs is slow
        per_replica = self.spec.parallel or 256

        def make() -> httpx.AsyncHTTPTransport:
            # No redirects are followed (an upstream cannot send us, and our key, elsewhere) and
            # nothing comes from the environment (proxies, .netrc credentials).
            return httpx.AsyncHTTPTransport(
                verify=tls,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                trust_env=False,
                uds=self._uds,
            )

        self._new_pool = lambda: TransportPool(make, per_replica)
        for replica in self._replicas:
            replica.transports = self._new_pool()

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
            transports, replica.transports = replica.transports, None
            if transports is not None:
                await transports.aclose()

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
