"""The price of each model now: a remote model's ``price``, a local one's from its cost model.

A local model's price follows the prefill and decode rates its engine measured (see
:class:`~cloudlet.pricing.LocalPricer`); the engines' stats are read at most once per
:data:`STATS_TTL_S`. The reference ("cloud-equivalent") price of each model comes with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

from cloudlet.config import ModelSpec
from cloudlet.config.storage import CostSpec
from cloudlet.domain import EngineStats
from cloudlet.gateway.pricing import price_of
from cloudlet.pricing import DEFAULT_REFERENCE, LocalPricer, Price

#: A local model without ``cost:`` is priced as a small 2-vCPU cloud VM (an assumption, shown
#: in the README): enough to make local requests visible, never free.
DEFAULT_LOCAL_COST = CostSpec(hardware_per_hour=Decimal("0.05"))


#: A model the spec does not list (an engine passed in directly): free, default reference.
_UNPRICED = (Price(Decimal(0), Decimal(0), "USD"), DEFAULT_REFERENCE)

#: How long the engines' measured rates are reused before they are read again.
STATS_TTL_S = 1.0


class Prices:
    """The price of each model now: its ``price`` (remote) or its cost model (local).

    A local model's price follows the throughput its engine measured; the engines' stats are
    read at most once per :data:`STATS_TTL_S` (every admitted request asks for prices, and the
    rate moves slowly). A request keeps the price it was admitted with until it settles.
    """

    def __init__(
        self,
        models: Sequence[ModelSpec],
        stats: Callable[[], Mapping[str, EngineStats]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stats = stats
        self._clock = clock
        self._read: tuple[float, Mapping[str, EngineStats]] | None = None  # (until, stats)
        self._fixed: dict[str, tuple[Price, Price]] = {}
        self._local: dict[str, tuple[LocalPricer, Price]] = {}
        self._cloud = frozenset(m.name for m in models if m.cloud)
        for m in models:
            if m.price is not None:
                price = price_of(m.price)
                self._fixed[m.name] = (price, price)
            else:
                cost = m.cost or DEFAULT_LOCAL_COST
                self._local[m.name] = (cost.pricer(), cost.reference())

    def is_cloud(self, model: str) -> bool:
        """Whether ``model`` is a ``cloud: true`` target (else it runs on our own hardware)."""
        return model in self._cloud

    def of(self, model: str) -> tuple[Price, Price]:
        """(what it costs, what a reference cloud would charge) for ``model``'s tokens."""
        return self.of_targets((model,))[model]

    def of_targets(self, targets: Sequence[str]) -> dict[str, tuple[Price, Price]]:
        """:meth:`of` for each of ``targets``."""
        out: dict[str, tuple[Price, Price]] = {}
        for target in targets:
            fixed = self._fixed.get(target)
            if fixed is not None:
                out[target] = fixed
                continue
            local = self._local.get(target)
            if local is None:
                out[target] = _UNPRICED
                continue
            measured = self._measured().get(target)
            pricer, reference = local
            decode = prefill = 0.0
            if measured is not None:
                # An engine that does not split its rates reports only its generation rate.
                decode = measured.completion_tokens_per_second or measured.tokens_per_second
                prefill = measured.prompt_tokens_per_second
            out[target] = (pricer.price(decode, prefill), reference)
        return out

    def _measured(self) -> Mapping[str, EngineStats]:
        now = self._clock()
        read = self._read
        if read is None or now >= read[0]:
            read = self._read = (now + STATS_TTL_S, self._stats())
        return read[1]
