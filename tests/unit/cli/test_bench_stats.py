"""The measurement core of ``cloudlet bench``: percentiles and the summary of one run."""

from __future__ import annotations

import random
import statistics

import pytest

from cloudlet.cli.bench_stats import (
    CONNECTION,
    Percentiles,
    RequestResult,
    percentile,
    summarize,
)


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile(values, 100) == 4.0
    assert values == [4.0, 1.0, 3.0, 2.0]  # the input is left alone


def test_percentile_of_one_value_and_of_none() -> None:
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_percentile_matches_the_standard_librarys_inclusive_quantiles() -> None:
    rng = random.Random(7)
    data = [rng.expovariate(1 / 50) for _ in range(101)]
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    for q in (1, 25, 50, 90, 99):
        assert percentile(data, q) == pytest.approx(cuts[q - 1])


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_outside_0_to_100_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], q)


def test_percentiles_are_in_milliseconds() -> None:
    p = Percentiles.of([0.010, 0.020, 0.030])
    assert (p.p50, p.p90) == (pytest.approx(20.0), pytest.approx(28.0))
    assert Percentiles.of([]).as_json() == {"p50": None, "p90": None, "p99": None}


def _ok(
    latency: float, ttft: float | None, gaps: tuple[float, ...], tokens: int | None
) -> RequestResult:
    return RequestResult(ok=True, latency_s=latency, ttft_s=ttft, gaps_s=gaps, output_tokens=tokens)


def test_summary_counts_rates_and_latencies_of_successes_only() -> None:
    results = [
        _ok(1.0, 0.1, (0.01, 0.03), 10),
        _ok(2.0, 0.3, (0.02,), 20),
        _ok(3.0, 0.2, (), None),  # no usage came back: no tokens counted
        RequestResult.failed("500", "overloaded", 9.0),
        RequestResult.failed(CONNECTION, "refused", 0.001),
        RequestResult.failed("500", "overloaded again", 9.0),
    ]
    s = summarize(results, wall_s=2.0)
    assert (s.requests, s.ok, s.failed) == (6, 3, 3)
    assert list(s.failed_by.items()) == [("500", 2), (CONNECTION, 1)]  # most frequent first
    assert s.errors == {"500": "overloaded", CONNECTION: "refused"}  # the first message of each
    assert s.requests_per_s == 1.5
    assert (s.output_tokens, s.output_tokens_per_s) == (30, 15.0)
    assert s.requests_without_usage == 1
    assert s.latency.p50 == pytest.approx(2000.0)  # the failures' 9 s are not latencies
    assert s.latency.p99 == pytest.approx(2980.0)
    assert s.ttft.p50 == pytest.approx(200.0)
    assert s.itl.p50 == pytest.approx(20.0)  # gaps pooled over all requests: 10, 20, 30 ms
    assert s.headline_error() == "500: overloaded (2 requests)"


def test_summary_as_json() -> None:
    s = summarize(
        [_ok(0.5, 0.1234567, (0.05,), 8), RequestResult.failed("429", "slow down", 0.1)], 1.0
    )
    assert s.as_json() == {
        "requests": 2,
        "ok": 1,
        "failed": 1,
        "failed_by_status": {"429": 1},
        "errors": {"429": "slow down"},
        "wall_s": 1.0,
        "requests_per_s": 1.0,
        "output_tokens": 8,
        "output_tokens_per_s": 8.0,
        "requests_without_usage": 0,
        "ttft_ms": {"p50": 123.457, "p90": 123.457, "p99": 123.457},
        "latency_ms": {"p50": 500.0, "p90": 500.0, "p99": 500.0},
        "itl_ms": {"p50": 50.0},
    }


def test_an_empty_or_instant_run_has_no_rates_and_no_percentiles() -> None:
    s = summarize([], wall_s=0.0)
    assert (s.requests, s.ok, s.failed, s.requests_per_s, s.output_tokens_per_s) == (0, 0, 0, 0, 0)
    assert s.latency == Percentiles(None, None, None)
    assert s.headline_error() == ""
    only_failures = summarize([RequestResult.failed("503", "", 0.1)], wall_s=1.0)
    assert only_failures.headline_error() == "503 (1 request)"
    assert only_failures.ttft.p50 is None
