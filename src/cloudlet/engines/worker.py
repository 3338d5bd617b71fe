"""A local model in its own worker process, as the gateway sees it.

:class:`WorkerEngine` is a :class:`~cloudlet.engines.base.ChatEngine` (or embedding engine)
whose model runs in a `cloudlet worker` process that :class:`~.worker_process.WorkerProcess`
starts and supervises. The gateway speaks the OpenAI wire to it over a Unix socket with the
remote-engine client (:mod:`cloudlet.engines.openai_remote`), so the gateway process loads no
llama.cpp model and its event loop never shares the GIL with the decode loop.

What the gateway knows about the engine stays what it knew in-process: the requests it has
sent and not yet finished are counted here, exactly (the gateway is the worker's only client),
and with the worker's capacity and job duration, polled from its ``/stats`` once a second,
give the queue depth and the queue-wait estimate that local-first routing spills on. Tokens/s
and prompt-cache counters come from the same poll.

While the worker is down (crashed, restarting), requests fail at once with 503 and a
``Retry-After`` (a route fails over to its next target first); streams cut by a crash end with
an error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

import httpx

from cloudlet.config import ModelSpec
from cloudlet.config.remote import TimeoutsSpec
from cloudlet.domain import (
    EmbeddingResult,
    EngineStats,
    GenerationEvent,
    GenerationRequest,
    ModelId,
    ModelInfo,
    WorkerState,
)
from cloudlet.engines.openai_remote import OpenAIEngine
from cloudlet.engines.openai_reply import parse_json, status_error
from cloudlet.engines.openai_wire import generation_body
from cloudlet.engines.worker_process import TOKEN_ENV, Backoff, WorkerProcess
from cloudlet.errors import EngineUnavailable, UpstreamError, UpstreamRateLimited

log = logging.getLogger(__name__)
_STATS_FIELDS = frozenset(f.name for f in dataclasses.fields(EngineStats))
POLL_S = 1.0
HUNG_AFTER = 30  # failed polls in a row (with a live process) before the worker is killed
_TIMEOUTS = TimeoutsSpec(connect_s=5.0, first_token_s=86_400.0, read_s=600.0)
TOKENIZE_TIMEOUT_S = 60.0  # the worker's own bound on preparing a prompt is 30 s


class WorkerEngine:
    def __init__(self, spec: ModelSpec, *, backoff: Backoff | None = None) -> None:
        self.spec = spec
        self._backoff = backoff
        self._info = ModelInfo(
            id=ModelId(spec.name),
            kind=spec.kind,
            engine="llamacpp",
            context_length=spec.context,
            created=int(time.time()),
            source=spec.source,
            capabilities=spec.capabilities,
        )
        self._run_dir: Path | None = None
        self._process: WorkerProcess | None = None
        self._client: OpenAIEngine | None = None
        self._remote = EngineStats(capacity=spec.parallel or 1)
        self._poller: asyncio.Task[None] | None = None
        self._token = ""

    @property
    def info(self) -> ModelInfo:
        return self._info

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        token = secrets.token_urlsafe(32)
        self._run_dir = Path(tempfile.mkdtemp(prefix="cloudlet-worker-"))  # mode 0700
        process = WorkerProcess(
            self.spec, run_dir=self._run_dir, token=token, backoff=self._backoff
        )
        self._process = process
        self._token = token
        client = OpenAIEngine(
            ModelSpec(
                name=self.spec.name,
                engine="openai",
                kind=self.spec.kind,
                url="http://worker/v1",
                context=self.spec.context,
                max_tokens_default=self.spec.max_tokens_default,
                api_key="${" + TOKEN_ENV + "}",
                timeouts=_TIMEOUTS,
            ),
            environ={TOKEN_ENV: token},
            uds=str(process.socket),
            bound_max_tokens=False,  # the engine bounds it by the room the prompt leaves
        )
        client.replicas[0].name = f"the worker of model {self.spec.name!r}"  # in messages
        await client.start()
        self._client = client
        await process.start()
        # Capacity and the job prior are known before the engine counts as loaded: the first
        # burst after start must see them (local-first spill), not wait for the first poll.
        async with self._stats_client(process, token) as first:
            await self._read_stats(first)
        self._poller = asyncio.get_running_loop().create_task(
            self._poll(process, token), name=f"stats-{self.spec.name}"
        )

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._process is not None:
            await self._process.stop()
        if self._client is not None:
            await self._client.close()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    # --- supervision, as the gateway sees it ---------------------------------------------------

    def is_up(self) -> bool:
        return self._process is not None and self._process.up

    def worker_state(self) -> WorkerState:
        return self._process.state if self._process is not None else WorkerState("stopped")

    def _down(self) -> EngineUnavailable:
        state = self.worker_state()
        why = f" after its worker {state.last_exit}" if state.last_exit else ""
        return EngineUnavailable(
            f"model {self.spec.name!r} is restarting{why}; retry shortly", retry_after=5
        )

    # --- requests ------------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        client = self._client
        if client is None or not self.is_up():
            raise self._down()
        try:
            return await client.replicas[0].generate(request)
        except UpstreamRateLimited:
            raise
        except UpstreamError as exc:  # the worker broke off before the first token
            raise self._down() from exc

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        client = self._client
        if client is None or not self.is_up():
            raise self._down()
        try:
            return await client.replicas[0].embed(texts)
        except UpstreamRateLimited:
            raise
        except UpstreamError as exc:
            raise self._down() from exc

    async def count_tokens(self, request: GenerationRequest) -> list[int]:
        """The prompt's tokens as the worker's model evaluates them (its ``/tokenize``, sent
        the same body as a generation, so the same template renders the same prompt)."""
        process = self._process
        if process is None or not self.is_up():
            raise self._down()
        where = f"the worker of model {self.spec.name!r}"
        body = generation_body(request, self.spec.name)
        async with self._stats_client(process, self._token) as client:
            try:
                response = await client.post(
                    "http://worker/tokenize", json=body, timeout=TOKENIZE_TIMEOUT_S
                )
            except httpx.HTTPError as exc:
                raise self._down() from exc
        if response.status_code != 200:
            raise status_error(response.status_code, response.content, response.headers, where)
        tokens = parse_json(response.content, where, "the body").get("tokens")
        if not isinstance(tokens, list) or not all(type(t) is int for t in tokens):
            raise UpstreamError(f"{where} sent a malformed reply (tokens is not a list)")
        return tokens

    def stats(self) -> EngineStats:
        """The worker's polled statistics, with the load counted here (see the module
        docstring): a request arriving now waits for ``waiting + 1`` of the running jobs."""
        remote = self._remote
        client = self._client
        outstanding = client.replicas[0].outstanding if client is not None else 0
        capacity = max(1, remote.capacity)
        waiting = max(0, outstanding - capacity)
        wait = 0.0
        if outstanding >= capacity:
            wait = (waiting + 1) * remote.job_seconds / capacity
        return dataclasses.replace(
            remote,
            queue_depth=waiting,
            running=min(outstanding, capacity),
            capacity=capacity,
            estimated_queue_wait_s=wait,
        )

    def _stats_client(self, process: WorkerProcess, token: str) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(process.socket))
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.AsyncClient(transport=transport, timeout=5.0, headers=headers)

    async def _read_stats(self, client: httpx.AsyncClient) -> bool:
        """One read of the worker's /stats; False when it did not answer."""
        try:
            response = await client.get("http://worker/stats")
            entry = response.json()[self.spec.name]
            self._remote = EngineStats(**{k: v for k, v in entry.items() if k in _STATS_FIELDS})
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return False
        return True

    async def _poll(self, process: WorkerProcess, token: str) -> None:
        """Read the worker's /stats once a second; kill a worker that stops answering."""
        failed = 0
        async with self._stats_client(process, token) as client:
            while True:
                await asyncio.sleep(POLL_S)
                if not process.up or await self._read_stats(client):
                    failed = 0
                else:
                    failed += 1
                    if failed >= HUNG_AFTER:
                        process.kill(f"has not answered for {failed} polls")
                        failed = 0
