"""The batched engine's job-duration estimate and its windowed generation rate (pure Python:
the decode thread feeds them; here the test does)."""

from __future__ import annotations

import pytest

from cloudlet.engines.llamacpp_warmup import StepCosts
from cloudlet.engines.rates import JobTimes, WindowRate


def test_the_rate_counts_only_the_steps_of_the_window() -> None:
    rate = WindowRate(window_s=10.0)
    assert rate.step(100.0, 8, 0.5) == pytest.approx(16.0)
    assert rate.step(105.0, 4, 0.5) == pytest.approx(12.0)  # 12 tokens in 1 s
    # 11 s after the first step: it left the window, the second is still in.
    assert rate.step(111.0, 2, 1.5) == pytest.approx(3.0)  # 6 tokens in 2 s
    assert rate.step(200.0, 0, 0.0) == 0.0  # nothing busy in the window


def test_before_the_warm_up_there_is_no_prior() -> None:
    times = JobTimes(parallel=4)
    times.admitted(100, 20)
    assert times.prior() == 0.0
    assert times.typical(100, 20) == 0.0


def test_the_prior_is_the_warm_ups_for_the_average_job_in_hand() -> None:
    costs = StepCosts(step_s=0.01, prompt_token_s=0.001)
    times = JobTimes(parallel=2)
    times.costs = costs
    assert times.prior() == 0.0  # idle
    times.admitted(100, 10)
    times.admitted(300, 30)
    assert times.prior() == pytest.approx(costs.job_seconds(200, 20, 2))
    times.released(100, 10)
    assert times.prior() == pytest.approx(costs.job_seconds(300, 30, 2))
    assert times.typical(50, 5) == pytest.approx(costs.job_seconds(50, 5, 2))


def test_the_average_of_ended_jobs_leans_on_the_recent_ones() -> None:
    times = JobTimes(parallel=1)
    assert times.ended(2.0) == 2.0  # the first is the average
    assert times.ended(1.0) == pytest.approx(0.8 * 2.0 + 0.2 * 1.0)
