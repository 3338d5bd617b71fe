"""The dashboard's live feed, fed RequestRecords made here, on a fake clock."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from cloudlet.observe.live import LiveFeed, percentile

from .live_records import T0, rec


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_recent_is_newest_first_and_bounded() -> None:
    feed = LiveFeed(recent=3, clock=Clock())
    for i in range(5):
        feed.record(rec(f"r{i}"))
    assert [r.request_id for r in feed.recent()] == ["r4", "r3", "r2"]
    assert [r.request_id for r in feed.recent(2)] == ["r4", "r3"]


def test_totals_split_local_and_cloud_cost_and_savings() -> None:
    feed = LiveFeed(clock=Clock())
    feed.record(rec("a", cost="0.001", equivalent="0.004"))
    feed.record(rec("b", cost="0.002", equivalent="0.004"))
    feed.record(
        rec("c", target="cloud", spilled=True, cloud=True, cost="0.010", equivalent="0.005")
    )
    feed.record(
        rec("d", target=None, status="refused", completion=0, ttft=None, cost="0", equivalent="0")
    )
    total = feed.total()
    assert total.requests == 4
    assert total.spilled == 1
    assert total.refused == 1
    assert total.local_cost == Decimal("0.003")
    assert total.cloud_cost == Decimal("0.010")
    assert total.cloud_equivalent == Decimal("0.013")
    # Savings count the local requests only: 0.008 equivalent - 0.003 cost.
    assert total.saved == Decimal("0.005")
    totals = feed.totals()
    assert list(totals) == ["chat", "cloud", "local"]  # nothing served "d": it is under "chat"
    assert totals["local"].requests == 2
    assert totals["cloud"].cloud_cost == Decimal("0.010")
    assert totals["chat"].refused == 1
    assert feed.asked() == {"chat": 4}


def test_other_currencies_count_as_requests_but_add_no_money() -> None:
    feed = LiveFeed(currency="EUR", clock=Clock())
    feed.record(rec(cost="1", equivalent="2", currency="USD"))
    total = feed.total()
    assert total.requests == 1
    assert total.local_cost == Decimal(0) and total.cloud_equivalent == Decimal(0)


def test_window_rates_percentiles_and_spill_share() -> None:
    clock = Clock(T0 + 600)  # long after the start: the window is full
    feed = LiveFeed(window_s=60, bucket_s=5, clock=clock)
    feed.started = T0
    for i, ttft in enumerate([0.1, 0.2, 0.3, 0.4, 1.0]):
        feed.record(rec(f"l{i}", ttft=ttft, completion=12))
    feed.record(rec("c1", target="cloud", cloud=True, spilled=True, ttft=0.5, completion=6))
    served = {w.name: w for w in feed.served()}
    local = served["local"]
    assert local.tally.requests == 5
    assert local.requests_per_s == pytest.approx(5 / 60)
    assert local.tokens_per_s == pytest.approx(60 / 60)
    assert local.ttft_p50_s == pytest.approx(0.3)
    assert local.ttft_p95_s == pytest.approx(0.4 + 0.6 * 0.8)
    assert served["cloud"].ttft_p50_s == pytest.approx(0.5)
    (chat,) = feed.requested()
    assert chat.name == "chat"
    assert chat.tally.requests == 6
    assert chat.tally.spill_share == pytest.approx(1 / 6)


def test_old_buckets_leave_the_window() -> None:
    clock = Clock()
    feed = LiveFeed(window_s=30, bucket_s=5, clock=clock)
    feed.record(rec("old"))
    clock.now += 100
    feed.record(rec("new"))
    assert feed.window().requests == 1
    assert [w.tally.requests for w in feed.served()] == [1]
    assert feed.total().requests == 2  # totals keep everything
    clock.now += 100
    assert feed.window().requests == 0
    assert feed.served()[0].ttft_p50_s is None


def test_traffic_series_align_with_the_buckets() -> None:
    clock = Clock(T0 + 600)
    feed = LiveFeed(window_s=20, bucket_s=5, clock=clock)
    feed.record(rec("a", ttft=0.2, completion=10))
    clock.now += 5
    feed.record(rec("b", ttft=0.4, completion=20))
    feed.record(rec("c", ttft=0.6, completion=30))
    series = feed.traffic()
    times = series["requests_per_s"].times
    assert times == [T0 + 585, T0 + 590, T0 + 595, T0 + 600, T0 + 605]
    assert series["requests_per_s"].values["local"] == [0, 0, 0, 1 / 5, 2 / 5]
    assert series["tokens_per_s"].values["local"] == [0, 0, 0, 2, 10]
    assert series["ttft_p50_s"].values["local"] == [None, None, None, 0.2, 0.5]
    assert series["ttft_p95_s"].values["local"][-1] == pytest.approx(0.59)


def test_cost_series_and_cloud_costs_by_route() -> None:
    clock = Clock(T0 + 600)
    feed = LiveFeed(window_s=10, bucket_s=5, clock=clock)
    feed.record(rec("a", cost="0.5", equivalent="1"))
    feed.record(rec("b", target="cloud", cloud=True, spilled=True, cost="2", equivalent="2"))
    direct = rec(
        "c", model="cloud", route=None, target="cloud", cloud=True, cost="3", equivalent="4"
    )
    feed.record(direct)
    costs = feed.costs()
    assert costs.values["local"][-1] == 0.5
    assert costs.values["cloud"][-1] == 5.0
    assert costs.values["cloud_equivalent"][-1] == 7.0
    own = feed.cloud_costs(lambda route, target: route == "chat")
    assert own == [Decimal(0), Decimal(0), Decimal(2)]
    covering = feed.cloud_costs(lambda route, target: route in ("chat", None))
    assert covering[-1] == Decimal(5)


def test_a_clock_that_steps_back_lands_in_the_last_bucket() -> None:
    clock = Clock(T0 + 100)
    feed = LiveFeed(window_s=30, bucket_s=5, clock=clock)
    feed.record(rec("a"))
    clock.now -= 20
    feed.record(rec("b"))
    clock.now += 20
    assert feed.window().requests == 2


def test_ttft_samples_per_bucket_are_bounded() -> None:
    feed = LiveFeed(clock=Clock())
    one = rec()
    for i in range(1000):
        feed.record(replace(one, request_id=f"r{i}", ttft_s=i / 1000))
    assert feed.served()[0].tally.requests == 1000
    assert feed.served()[0].ttft_p50_s is not None
    assert len(feed._served["local"].buckets[-1].ttfts) == 256


def test_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5


def test_bad_window() -> None:
    with pytest.raises(ValueError):
        LiveFeed(window_s=1, bucket_s=5)


def test_spill_shares_per_bucket() -> None:
    clock = Clock(T0 + 600)
    feed = LiveFeed(window_s=10, bucket_s=5, clock=clock)
    feed.record(rec("a"))
    feed.record(rec("b", target="cloud", cloud=True, spilled=True))
    feed.record(rec("c", target="cloud", cloud=True, spilled=True))
    feed.record(rec("d"))
    shares = feed.spill_shares(["chat", "other"])
    assert shares.values == {"chat": [None, None, 0.5], "other": [None, None, None]}
