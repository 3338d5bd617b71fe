"""How ``cloudlet bench`` sends one chat completion and times it, as a ``RequestResult``.

Streaming requests ask for ``stream_options.include_usage`` and are timed to the first content
chunk (TTFT) and between content chunks (inter-token latency); every request is timed end to
end. Failures never raise: they come back as a failed result with a kind and a message.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from cloudlet.cli.bench_stats import CONNECTION, STREAM, TIMEOUT, RequestResult


@dataclass(frozen=True)
class Plan:
    url: str  # base URL, no trailing slash
    model: str
    prompts: tuple[str, ...]
    requests: int
    concurrency: int
    max_tokens: int
    stream: bool
    headers: dict[str, str]
    timeout_s: float


async def one_request(client: httpx.AsyncClient, plan: Plan, prompt: str) -> RequestResult:
    body: dict[str, Any] = {
        "model": plan.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": plan.max_tokens,
        "stream": plan.stream,
    }
    if plan.stream:
        body["stream_options"] = {"include_usage": True}
    start = time.perf_counter()
    try:
        if plan.stream:
            return await _streamed(client, body, start)
        response = await client.post("/chat/completions", json=body)
        latency = time.perf_counter() - start
        if response.status_code != 200:
            return RequestResult.failed(str(response.status_code), error_message(response), latency)
        return RequestResult(ok=True, latency_s=latency, output_tokens=_tokens(response.json()))
    except httpx.TimeoutException as exc:
        return RequestResult.failed(TIMEOUT, describe(exc), time.perf_counter() - start)
    except httpx.HTTPError as exc:
        return RequestResult.failed(CONNECTION, describe(exc), time.perf_counter() - start)
    except (ValueError, TypeError, AttributeError) as exc:  # not JSON, or not OpenAI's shape
        return RequestResult.failed(
            STREAM, f"malformed response: {exc}", time.perf_counter() - start
        )


async def _streamed(client: httpx.AsyncClient, body: dict[str, Any], start: float) -> RequestResult:
    ttft: float | None = None
    last = start
    gaps: list[float] = []
    tokens: int | None = None
    async with client.stream("POST", "/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return RequestResult.failed(
                str(response.status_code), error_message(response), time.perf_counter() - start
            )
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if not isinstance(event, dict):
                raise ValueError(f"event is not an object: {data[:80]}")
            if "error" in event:
                message = _message_of(event) or "error event in the stream"
                return RequestResult.failed(STREAM, message, time.perf_counter() - start)
            tokens = _tokens(event) if event.get("usage") else tokens
            for choice in event.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    if ttft is None:
                        ttft = now - start
                    else:
                        gaps.append(now - last)
                    last = now
                    break
    return RequestResult(
        ok=True,
        latency_s=time.perf_counter() - start,
        ttft_s=ttft,
        gaps_s=tuple(gaps),
        output_tokens=tokens,
    )


def _tokens(payload: Any) -> int | None:
    try:
        return int(payload["usage"]["completion_tokens"])
    except (KeyError, TypeError, ValueError):
        return None


def _message_of(payload: Any) -> str | None:
    try:
        return str(payload["error"]["message"])
    except (KeyError, TypeError):
        return None


def error_message(response: httpx.Response) -> str:
    try:
        return _message_of(response.json()) or response.text[:200]
    except ValueError:
        return response.text[:200] or response.reason_phrase


def describe(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__
