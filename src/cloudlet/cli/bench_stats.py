"""The measurement core of ``cloudlet bench``: per-request results, percentiles, the summary.

Pure (no I/O, no clock), so it is tested without HTTP. ``cli/bench.py`` times the requests and
hands a list of ``RequestResult`` and the wall time to ``summarize``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Why a request failed when it got no HTTP error status.
CONNECTION = "connection"
TIMEOUT = "timeout"
STREAM = "stream"  # a 200 whose stream carried an error event or was malformed


@dataclass(frozen=True)
class RequestResult:
    """One request as the client saw it. Times in seconds from sending the request."""

    ok: bool
    latency_s: float
    failure: str | None = None  # "500", "429", CONNECTION, TIMEOUT, STREAM; None when ok
    message: str | None = None  # the server's error message, for the report
    ttft_s: float | None = None  # to the first non-empty content chunk (streaming only)
    gaps_s: tuple[float, ...] = ()  # between consecutive content chunks (streaming only)
    output_tokens: int | None = None  # usage.completion_tokens, when the server sent usage

    @staticmethod
    def failed(failure: str, message: str, latency_s: float) -> RequestResult:
        return RequestResult(ok=False, latency_s=latency_s, failure=failure, message=message)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (as numpy's
    default); None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Percentiles:
    """p50/p90/p99 in milliseconds (None when nothing was measured)."""

    p50: float | None
    p90: float | None
    p99: float | None

    @staticmethod
    def of(seconds: Sequence[float]) -> Percentiles:
        def ms(q: float) -> float | None:
            value = percentile(seconds, q)
            return None if value is None else value * 1000

        return Percentiles(ms(50), ms(90), ms(99))

    def as_json(self) -> dict[str, float | None]:
        return {"p50": _round(self.p50), "p90": _round(self.p90), "p99": _round(self.p99)}


@dataclass(frozen=True)
class Summary:
    requests: int
    ok: int
    failed: int
    failed_by: dict[str, int]  # failure kind ("500", CONNECTION, ...) -> count, most first
    wall_s: float
    requests_per_s: float
    output_tokens: int
    output_tokens_per_s: float
    requests_without_usage: int  # ok requests whose server sent no usage (tokens not counted)
    ttft: Percentiles
    latency: Percentiles
    itl: Percentiles
    errors: dict[str, str] = field(default_factory=dict)  # failure kind -> first message seen

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "failed_by_status": self.failed_by,
            "errors": self.errors,
            "wall_s": _round(self.wall_s),
            "requests_per_s": _round(self.requests_per_s),
            "output_tokens": self.output_tokens,
            "output_tokens_per_s": _round(self.output_tokens_per_s),
            "requests_without_usage": self.requests_without_usage,
            "ttft_ms": self.ttft.as_json(),
            "latency_ms": self.latency.as_json(),
            "itl_ms": {"p50": _round(self.itl.p50)},
        }

    def headline_error(self) -> str:
        """The most frequent failure with its message, e.g. ``500: overloaded (3 requests)``."""
        if not self.failed_by:
            return ""
        kind, count = next(iter(self.failed_by.items()))
        message = self.errors.get(kind, "")
        times = f"{count} request{'s' if count != 1 else ''}"
        return f"{kind}: {message} ({times})" if message else f"{kind} ({times})"


def summarize(results: Iterable[RequestResult], wall_s: float) -> Summary:
    """Aggregate the results of one run that took ``wall_s`` seconds of wall time.

    Rates count successful requests and their tokens only; latencies (end to end, time to first
    token, inter-token gaps pooled over all requests) come from successful requests only.
    """
    results = list(results)
    good = [r for r in results if r.ok]
    failures = Counter(r.failure or "unknown" for r in results if not r.ok)
    errors: dict[str, str] = {}
    for r in results:
        if not r.ok and r.message and (r.failure or "unknown") not in errors:
            errors[r.failure or "unknown"] = r.message
    tokens = sum(r.output_tokens or 0 for r in good)
    return Summary(
        requests=len(results),
        ok=len(good),
        failed=len(results) - len(good),
        failed_by=dict(failures.most_common()),
        wall_s=wall_s,
        requests_per_s=_rate(len(good), wall_s),
        output_tokens=tokens,
        output_tokens_per_s=_rate(tokens, wall_s),
        requests_without_usage=sum(1 for r in good if r.output_tokens is None),
        ttft=Percentiles.of([r.ttft_s for r in good if r.ttft_s is not None]),
        latency=Percentiles.of([r.latency_s for r in good]),
        itl=Percentiles.of([gap for r in good for gap in r.gaps_s]),
        errors=errors,
    )


def _rate(count: int, wall_s: float) -> float:
    return count / wall_s if wall_s > 0 else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
