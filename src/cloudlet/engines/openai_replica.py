"""One upstream URL of a remote model (see :mod:`cloudlet.engines.openai_remote`).

A replica is an engine of its own for the gateway to balance, retry and break circuits over;
it shares its model's spec, headers and upstream model name, and has its own connections.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING

import aiohttp
from pydantic_core import to_json

from cloudlet.domain import (
    EmbeddingResult,
    EngineStats,
    GenerationEvent,
    GenerationRequest,
    ModelInfo,
)
from cloudlet.domain.tokens import prompt_token_bound
from cloudlet.engines import openai_reply as reply
from cloudlet.engines import openai_wire as wire
from cloudlet.engines.openai_stream import PrimedStream
from cloudlet.engines.propagation import trace_headers
from cloudlet.errors import (
    CloudletError,
    EngineOverloaded,
    EngineUnavailable,
    UpstreamError,
    UpstreamTimeout,
)

if TYPE_CHECKING:
    from cloudlet.engines.openai_remote import OpenAIEngine


class OpenAIReplica:
    """One upstream URL of a remote model: an engine of its own, with its own connections.

    With ``parallel`` set, at most that many requests run upstream at once and up to
    ``queue_size`` wait here, which gives a self-hosted upstream a queue-wait estimate that
    local-first routing can spill on.
    """

    def __init__(self, engine: OpenAIEngine, index: int, url: str) -> None:
        self._engine = engine
        self._endpoints = {
            path: url + path
            for path in ("/chat/completions", "/completions", "/embeddings", "/models")
        }
        self.name = f"replica {index} of model {engine.spec.name!r}"
        self.session: aiohttp.ClientSession | None = None  # set by the engine's start
        parallel = engine.spec.parallel
        self._slots = asyncio.Semaphore(parallel) if parallel else None
        self.outstanding = 0
        self._waiting = 0
        self._requests = 0
        self._job_seconds = 0.0

    @property
    def info(self) -> ModelInfo:
        return self._engine.info

    async def start(self) -> None:
        return None  # the model's engine sets up the connections

    async def close(self) -> None:
        return None

    def stats(self) -> EngineStats:
        parallel = self._engine.spec.parallel or 0
        running = self.outstanding - self._waiting
        wait = 0.0
        if parallel and running >= parallel:
            wait = (self._waiting + 1) * self._job_seconds / parallel
        return EngineStats(
            queue_depth=self._waiting,
            running=running,
            capacity=parallel or max(1, running),
            estimated_queue_wait_s=wait,
            requests_total=self._requests,
        )

    async def _send(self, path: str, body: object = None) -> aiohttp.ClientResponse:
        """Start a request on this replica's own connections (a POST of ``body`` as JSON, or
        a GET without one), carrying the attempt's trace context when there is one."""
        session = self.session
        if session is None:
            raise EngineUnavailable(f"model {self._engine.spec.name!r} is not started")
        engine = self._engine
        if body is None:
            return await session.get(
                self._endpoints[path], headers=engine.get_headers, allow_redirects=False
            )
        headers = engine.post_headers
        trace = trace_headers.get()  # see cloudlet.engines.propagation
        if trace:
            headers = {**headers, **dict(trace)}
        data = to_json(body)  # pydantic-core's serializer (Rust): UTF-8 bytes at once
        return await session.post(
            self._endpoints[path], data=data, headers=headers, allow_redirects=False
        )

    async def _call(
        self, path: str, body: object, timeout_s: float
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """One request read in full (bounded), with an overall timeout."""
        async with asyncio.timeout(timeout_s):
            response = await self._send(path, body)
            async with response:
                raw = await _read(response, reply.MAX_BODY_BYTES, self.name)
        return response.status, raw, response.headers

    async def probe(self, timeout_s: float) -> bool:
        """Active health check: does ``GET /models`` answer 200?"""
        try:
            status, _, _ = await self._call("/models", None, timeout_s)
        except (aiohttp.ClientError, CloudletError, TimeoutError):
            return False
        return status == 200

    # --- admission ---------------------------------------------------------------------------

    async def _acquire(self) -> None:
        """Take a slot (waiting for one under ``parallel``); ``_release`` gives it back."""
        spec = self._engine.spec
        full = self._slots is not None and self._slots.locked()
        if full and self._waiting >= spec.queue_size:
            raise EngineOverloaded(
                f"model {spec.name!r} has {self._waiting} requests waiting; retry later",
                retry_after=round(self.stats().estimated_queue_wait_s) + 1,
            )
        self.outstanding += 1
        self._requests += 1
        if self._slots is None:
            return
        self._waiting += 1
        try:
            await self._slots.acquire()
        except BaseException:
            self.outstanding -= 1
            raise
        finally:
            self._waiting -= 1

    def _release(self, started: float) -> None:
        self.outstanding -= 1
        if self._slots is not None:
            self._slots.release()
        elapsed = time.monotonic() - started
        self._job_seconds = (
            0.8 * self._job_seconds + 0.2 * elapsed if self._job_seconds else elapsed
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        spec = self._engine.spec
        if request.max_tokens is None and self._engine.bound_max_tokens:
            # bound the cost to what the gateway reserved
            request = dataclasses.replace(request, max_tokens=spec.max_tokens_default)
        body = wire.generation_body(request, self._engine.upstream_model)
        path = "/chat/completions" if request.messages is not None else "/completions"
        arrived = time.monotonic()
        await self._acquire()
        waited = time.monotonic() - arrived  # for a free slot of this replica (its queue)
        # An upstream that sends no usage is charged the prompt's upper bound (budgets hold).
        parser = reply.StreamParser(
            self.name, prompt_token_bound(request), request.n, request.stop, waited_s=waited
        )
        events = self._events(path, body, parser)
        try:
            async with asyncio.timeout(spec.timeouts.first_token_s):
                first = await anext(events)
        except TimeoutError as exc:
            await events.aclose()
            raise UpstreamTimeout(f"{self.name}: no first token in time") from exc
        except BaseException:
            await events.aclose()
            raise
        return PrimedStream(first, events)

    async def _events(
        self, path: str, body: dict[str, object], parser: reply.StreamParser
    ) -> AsyncGenerator[GenerationEvent, None]:
        """Upstream SSE → domain events, holding the replica's slot and a connection until
        closed. (One generator, not two nested: each layer costs a hop per event.)"""
        started = time.monotonic()
        response: aiohttp.ClientResponse | None = None
        try:
            try:
                response = await self._send(path, body)
            except TimeoutError as exc:
                raise UpstreamTimeout(f"{self.name} timed out") from exc
            except aiohttp.ClientError as exc:
                name = type(exc).__name__
                raise UpstreamError(f"{self.name} is unreachable ({name})") from exc
            if response.status != 200:
                raw = await _read(response, reply.MAX_BODY_BYTES, self.name)
                raise reply.status_error(response.status, raw, response.headers, self.name)
            if _is_json(response):  # a whole completion instead of a stream: take it
                raw = await _read(response, reply.MAX_BODY_BYTES, self.name)
                for event in parser.feed_body(raw):
                    yield event
                yield parser.finish()
                return
            idle_s = self._engine.spec.timeouts.read_s
            last = time.monotonic()
            seen = 0
            rest = b""
            try:
                async for data in response.content.iter_any():  # split as bytes
                    *lines, rest = (rest + data).split(b"\n")
                    for line in lines:
                        for event in parser.feed(line):
                            yield event
                    # Comments and keep-alives are silence: only chunks reset the idle clock.
                    now = time.monotonic()
                    if parser.data_lines != seen:
                        seen, last = parser.data_lines, now
                    elif now - last > idle_s:
                        raise UpstreamTimeout(f"{self.name} sent nothing but keep-alives")
                    if len(rest) > reply.MAX_LINE_BYTES:
                        raise UpstreamError(f"{self.name} sent a line without end")
            except TimeoutError as exc:
                raise UpstreamTimeout(f"{self.name} went silent mid-stream") from exc
            except aiohttp.ClientError as exc:
                name = type(exc).__name__
                raise UpstreamError(f"{self.name} broke off mid-stream ({name})") from exc
            # Read to the end even after [DONE]: a response left unread loses its
            # keep-alive connection, and every request would pay for a new one.
            parser.feed(rest)
            yield parser.finish()
        finally:
            if response is not None:
                response.release()  # back to the pool when read to the end, else closed
            self._release(started)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        spec = self._engine.spec
        body = {"model": self._engine.upstream_model, "input": list(texts)}
        body["encoding_format"] = "float"
        await self._acquire()
        started = time.monotonic()
        try:
            timeout_s = spec.timeouts.first_token_s
            status, raw, headers = await self._call("/embeddings", body, timeout_s)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name} timed out") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{self.name} is unreachable ({type(exc).__name__})") from exc
        finally:
            self._release(started)
        if status != 200:
            raise reply.status_error(status, raw, headers, self.name)
        return reply.embeddings(raw, texts, self.name)


def _is_json(response: aiohttp.ClientResponse) -> bool:
    return "json" in response.headers.get("content-type", "").lower()


async def _read(response: aiohttp.ClientResponse, limit: int, where: str) -> bytes:
    """The body, up to ``limit`` bytes: an upstream cannot make us hold more."""
    parts: list[bytes] = []
    size = 0
    try:
        async for data in response.content.iter_any():
            size += len(data)
            if size > limit:
                raise UpstreamError(f"{where} sent a body over {limit >> 20} MiB")
            parts.append(data)
    except TimeoutError as exc:
        raise UpstreamTimeout(f"{where} went silent mid-body") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"{where} broke off mid-body ({type(exc).__name__})") from exc
    return b"".join(parts)
