"""Routing policies: the order in which a route would like to try its targets.

Each policy ranks the targets; the first is the policy's choice, the rest are where failures
before the first token go next. A request that runs anywhere but on the first choice is
reported as spilled. ``local-first`` ranks in spec order here; the router then moves busy
local targets behind the remote ones (see :mod:`cloudlet.gateway.router`).

    local-first  spec order (local targets first is the point; spill is the router's part)
    fallback     spec order, the next one only on error
    weighted     a random order, each target first with probability weight / total weight
    cheapest     by the request's worst-case price (unpriced targets cost nothing)
    fastest      by observed time to first token; unobserved targets first, to observe them
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from decimal import Decimal

from cloudlet.config.remote import Policy
from cloudlet.gateway.targets import Target


def rank(
    policy: Policy,
    targets: Sequence[tuple[Target, float]],
    price_of: Callable[[Target], Decimal],
    rng: random.Random,
) -> list[Target]:
    """``targets`` as (target, weight) in spec order; sorts are stable, so ties keep it."""
    if policy == "weighted":
        # Efraimidis-Spirakis: sorting by u^(1/w) draws an order without replacement whose first
        # element is target i with probability w_i / sum(w).
        keyed = [(math.log(rng.random() or 1e-300) / w, t) for t, w in targets]
        return [t for _, t in sorted(keyed, key=lambda kt: kt[0], reverse=True)]
    plain = [t for t, _ in targets]
    if policy == "cheapest":
        return sorted(plain, key=price_of)
    if policy == "fastest":
        return sorted(plain, key=lambda t: -1.0 if t.ttft_s is None else t.ttft_s)
    return plain
