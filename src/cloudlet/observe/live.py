"""The dashboard's live feed: the last requests and rolling windows, in memory, per process.

A :class:`LiveFeed` is a sink (:class:`cloudlet.gateway.record.Sink`): every request's record
reaches it once, on the request's path, so :meth:`LiveFeed.record` does a constant amount of
work (a few dict look-ups and additions, no sorting, no I/O). Reading is where the work is:
percentiles and per-second rates are computed when the dashboard asks.

It keeps

* the last ``recent`` records, newest last (a record holds no prompt or completion text);
* per served model (the record's ``target``, or what the client asked for when nothing
  served it) and per requested name (a model or a route), time buckets of ``bucket_s``
  seconds covering the last ``window_s``: requests, errors, spills, tokens, cost local and
  cloud, the cloud-equivalent, and a bounded sample of times to first token;
* totals since the process started;
* the cloud cost per (route, target), for the routes' budget burn-down.

Buckets are stamped with the time a request *ended*, so a rate is "requests finished per
second". Everything runs on the event loop's thread: no locks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from cloudlet.gateway.record import RequestRecord

#: At most this many times to first token are kept per bucket and model (the first ones).
TTFT_SAMPLES = 256
_ZERO = Decimal(0)


@dataclass(slots=True)
class Tally:
    """Counts and sums over some requests (a bucket, or since the start)."""

    requests: int = 0
    errors: int = 0
    refused: int = 0
    spilled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    local_cost: Decimal = _ZERO
    cloud_cost: Decimal = _ZERO
    #: What the cloud would have charged for every request, and for the local ones alone.
    cloud_equivalent: Decimal = _ZERO
    local_equivalent: Decimal = _ZERO

    def add(self, record: RequestRecord, money: bool) -> None:
        self.requests += 1
        if record.status == "error":
            self.errors += 1
        elif record.status == "refused":
            self.refused += 1
        if record.spilled:
            self.spilled += 1
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens
        if money:
            self.cloud_equivalent += record.cloud_equivalent.amount
            if record.cloud:
                self.cloud_cost += record.cost.amount
            else:
                self.local_cost += record.cost.amount
                self.local_equivalent += record.cloud_equivalent.amount

    def merge(self, other: Tally) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.refused += other.refused
        self.spilled += other.spilled
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.local_cost += other.local_cost
        self.cloud_cost += other.cloud_cost
        self.cloud_equivalent += other.cloud_equivalent
        self.local_equivalent += other.local_equivalent

    @property
    def saved(self) -> Decimal:
        """The local requests' cloud-equivalent minus what they cost (as ``cloudlet usage``)."""
        return self.local_equivalent - self.local_cost

    @property
    def spill_share(self) -> float | None:
        return self.spilled / self.requests if self.requests else None


@dataclass(slots=True)
class _Bucket:
    start: float
    tally: Tally = field(default_factory=Tally)
    ttfts: list[float] = field(default_factory=list)


class _Window:
    """Buckets of one key, oldest first; at most ``size`` of them (gaps leave none)."""

    __slots__ = ("buckets",)

    def __init__(self, size: int) -> None:
        self.buckets: deque[_Bucket] = deque(maxlen=size)

    def at(self, start: float) -> _Bucket:
        buckets = self.buckets
        if buckets and buckets[-1].start >= start:  # this bucket (or a clock that stepped back)
            return buckets[-1]
        bucket = _Bucket(start)
        buckets.append(bucket)
        return bucket


@dataclass(frozen=True, slots=True)
class ModelWindow:
    """One served model (or requested name) over the window."""

    name: str
    tally: Tally
    requests_per_s: float
    tokens_per_s: float
    ttft_p50_s: float | None
    ttft_p95_s: float | None


@dataclass(frozen=True, slots=True)
class Series:
    """Per-bucket values over the window: ``times`` are bucket starts (seconds since the
    epoch); each name's list is as long, None where a bucket had nothing to measure."""

    times: list[float]
    values: dict[str, list[float | None]]


class LiveFeed:
    """The live feed (see the module docstring). ``currency`` is the deployment's: money in
    any other currency is counted as requests but not added up."""

    def __init__(
        self,
        *,
        currency: str = "USD",
        recent: int = 500,
        window_s: float = 300.0,
        bucket_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if bucket_s <= 0 or window_s < bucket_s:
            raise ValueError("need 0 < bucket_s <= window_s")
        self.currency = currency
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.started = clock()
        self._clock = clock
        self._size = int(window_s // bucket_s) + 1
        self._recent: deque[RequestRecord] = deque(maxlen=recent)
        self._served: dict[str, _Window] = {}
        self._requested: dict[str, _Window] = {}
        self._cloud: dict[tuple[str | None, str], _Window] = {}
        self._all = _Window(self._size)
        self._totals: dict[str, Tally] = {}  # by served model, since the start
        self._asked: dict[str, int] = {}  # requests by requested name, since the start

    # --- the sink --------------------------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        now = self._clock()
        start = now - now % self.bucket_s
        money = record.cost.currency == self.currency
        self._recent.append(record)
        served = record.target or record.model
        total = self._totals.get(served)
        if total is None:
            total = self._totals[served] = Tally()
        total.add(record, money)
        self._asked[record.model] = self._asked.get(record.model, 0) + 1
        self._all.at(start).tally.add(record, money)
        window = self._served.get(served)
        if window is None:
            window = self._served[served] = _Window(self._size)
        bucket = window.at(start)
        bucket.tally.add(record, money)
        if record.ttft_s is not None and len(bucket.ttfts) < TTFT_SAMPLES:
            bucket.ttfts.append(record.ttft_s)
        window = self._requested.get(record.model)
        if window is None:
            window = self._requested[record.model] = _Window(self._size)
        window.at(start).tally.add(record, money)
        if record.cloud and record.target is not None and money:
            key = (record.route, record.target)
            window = self._cloud.get(key)
            if window is None:
                window = self._cloud[key] = _Window(self._size)
            window.at(start).tally.add(record, money)

    # --- reading ---------------------------------------------------------------------------

    def now(self) -> float:
        """The feed's clock (seconds since the epoch): windows are read as of it."""
        return self._clock()

    def recent(self, limit: int | None = None) -> list[RequestRecord]:
        """The last requests, newest first."""
        records = list(self._recent)
        records.reverse()
        return records if limit is None else records[:limit]

    def totals(self) -> dict[str, Tally]:
        """Per served model, since the process started (copies)."""
        return {name: _copy(t) for name, t in sorted(self._totals.items())}

    def asked(self) -> dict[str, int]:
        """Requests per requested model or route, since the process started."""
        return dict(self._asked)

    def total(self) -> Tally:
        out = Tally()
        for tally in self._totals.values():
            out.merge(tally)
        return out

    def served(self, now: float | None = None) -> list[ModelWindow]:
        """Each served model over the window, by name."""
        return [self._summary(n, w, now) for n, w in sorted(self._served.items())]

    def requested(self, now: float | None = None) -> list[ModelWindow]:
        """Each requested model or route over the window (spill shares are read here)."""
        return [self._summary(n, w, now) for n, w in sorted(self._requested.items())]

    def window(self, now: float | None = None) -> Tally:
        """Every request over the window."""
        return _sum(self._in_window(self._all, now))

    def times(self, now: float | None = None) -> list[float]:
        """The starts of the window's buckets, oldest first (the last one is filling)."""
        now = self._clock() if now is None else now
        last = now - now % self.bucket_s
        return [last - i * self.bucket_s for i in range(self._size - 1, -1, -1)]

    def traffic(self, now: float | None = None) -> dict[str, Series]:
        """Per-bucket series by served model: ``requests_per_s``, ``tokens_per_s``,
        ``ttft_p50_s`` and ``ttft_p95_s``."""
        times = self.times(now)
        out = {k: Series(times, {}) for k in _TRAFFIC}
        for name, window in sorted(self._served.items()):
            by_start = {b.start: b for b in window.buckets}
            rows = [by_start.get(t) for t in times]
            rps = out["requests_per_s"].values[name] = []
            tps = out["tokens_per_s"].values[name] = []
            p50 = out["ttft_p50_s"].values[name] = []
            p95 = out["ttft_p95_s"].values[name] = []
            for bucket in rows:
                tally = bucket.tally if bucket is not None else Tally()
                rps.append(tally.requests / self.bucket_s)
                tps.append(tally.completion_tokens / self.bucket_s)
                samples = sorted(bucket.ttfts) if bucket is not None else []
                p50.append(percentile(samples, 0.50))
                p95.append(percentile(samples, 0.95))
        return out

    def costs(self, now: float | None = None) -> Series:
        """Per-bucket money over the window: ``local``, ``cloud`` and ``cloud_equivalent``."""
        times = self.times(now)
        by_start = {b.start: b.tally for b in self._all.buckets}
        tallies = [by_start.get(t, Tally()) for t in times]
        return Series(
            times,
            {
                "local": [float(t.local_cost) for t in tallies],
                "cloud": [float(t.cloud_cost) for t in tallies],
                "cloud_equivalent": [float(t.cloud_equivalent) for t in tallies],
            },
        )

    def spill_shares(self, names: Iterable[str], now: float | None = None) -> Series:
        """Per bucket, the share of the requests for each of ``names`` (routes) that spilled
        (None where a bucket had none)."""
        times = self.times(now)
        values: dict[str, list[float | None]] = {}
        for name in names:
            window = self._requested.get(name)
            by_start = {b.start: b.tally for b in window.buckets} if window is not None else {}
            values[name] = [_share(by_start.get(t)) for t in times]
        return Series(times, values)

    def cloud_costs(
        self, charged: Callable[[str | None, str], bool], now: float | None = None
    ) -> list[Decimal]:
        """Per bucket, what the cloud requests that ``charged(route, target)`` selects cost
        (a route's budget is charged for its own cloud requests, and for direct ones to a
        cloud model it covers)."""
        times = self.times(now)
        out = [_ZERO] * len(times)
        index = {t: i for i, t in enumerate(times)}
        for (route, target), window in self._cloud.items():
            if not charged(route, target):
                continue
            for bucket in window.buckets:
                i = index.get(bucket.start)
                if i is not None:
                    out[i] += bucket.tally.cloud_cost
        return out

    def _in_window(self, window: _Window, now: float | None) -> list[_Bucket]:
        now = self._clock() if now is None else now
        oldest = now - now % self.bucket_s - (self._size - 1) * self.bucket_s
        return [b for b in window.buckets if b.start >= oldest]

    def _summary(self, name: str, window: _Window, now: float | None) -> ModelWindow:
        now = self._clock() if now is None else now
        buckets = self._in_window(window, now)
        tally = _sum(buckets)
        samples = sorted(s for b in buckets for s in b.ttfts)
        # The window spans the full buckets plus the one filling; early on, since the start.
        span = min(self.window_s, max(self.bucket_s, now - self.started))
        return ModelWindow(
            name,
            tally,
            tally.requests / span,
            tally.completion_tokens / span,
            percentile(samples, 0.50),
            percentile(samples, 0.95),
        )


_TRAFFIC = ("requests_per_s", "tokens_per_s", "ttft_p50_s", "ttft_p95_s")


def percentile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted samples, linearly interpolated; None without samples."""
    if not ordered:
        return None
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _sum(buckets: Iterable[_Bucket]) -> Tally:
    out = Tally()
    for bucket in buckets:
        out.merge(bucket.tally)
    return out


def _copy(tally: Tally) -> Tally:
    out = Tally()
    out.merge(tally)
    return out


def _share(tally: Tally | None) -> float | None:
    return tally.spill_share if tally is not None else None
