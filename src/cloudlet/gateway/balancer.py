"""Order the replicas of one model for a request: the first is tried first, the rest are
where a failure before the first token goes next.

``least-outstanding`` (the default) prefers the replica with the fewest requests in flight,
which follows each replica's real speed without knowing it. ``prefix-affinity`` is consistent
hashing with bounded loads (CHWBL, as KubeAI routes vLLM replicas): requests whose prompts
share a prefix go to the same replica, whose KV cache already holds that prefix, unless that
replica carries more than ``load_factor`` times the average load; then the walk along the
hash ring continues to the next replica that is under the bound.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence

from cloudlet.domain import GenerationRequest

PREFIX_CHARS = 256  # enough to tell system prompts and few-shot preambles apart
VIRTUAL_NODES = 64  # points per replica on the ring: smooths the split between replicas
LOAD_FACTOR = 1.25  # KubeAI's default bound: at most 25% above the average load


def least_outstanding(loads: Sequence[int]) -> list[int]:
    """Indices by load, ties in spec order (stable sort)."""
    return sorted(range(len(loads)), key=loads.__getitem__)


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def prefix_key(request: GenerationRequest) -> str:
    """The first characters of the prompt as the model sees it (roles included)."""
    if request.messages is None:
        return (request.prompt or "")[:PREFIX_CHARS]
    out: list[str] = []
    size = 0
    for message in request.messages:
        out.append(f"{message.role}\x00{message.content}\x00")
        size += len(out[-1])
        if size >= PREFIX_CHARS:
            break
    return "".join(out)[:PREFIX_CHARS]


class PrefixAffinity:
    """A hash ring over replica indices, built once per set of replicas.

    ``replicas`` is their number, or a stable key per replica (a pod's address): keyed points
    stay where they are when replicas come and go, so only the prefixes of a replica that left
    (or the share a new one takes) move, and the others keep their warm caches.
    """

    def __init__(self, replicas: int | Sequence[str], *, load_factor: float = LOAD_FACTOR) -> None:
        self._load_factor = load_factor
        keys = [f"replica-{i}" for i in range(replicas)] if isinstance(replicas, int) else replicas
        replicas = len(keys)
        points = sorted(
            (_hash(f"{key}-{v}"), i) for i, key in enumerate(keys) for v in range(VIRTUAL_NODES)
        )
        self._hashes = [h for h, _ in points]
        self._owners = [i for _, i in points]
        self._replicas = replicas

    def order(self, key: str, loads: Sequence[int]) -> list[int]:
        """Replicas along the ring from ``key``; the first one under the load bound leads."""
        if self._replicas <= 1:
            return list(range(self._replicas))
        start = bisect.bisect(self._hashes, _hash(key))
        walk: list[int] = []
        for step in range(len(self._owners)):
            owner = self._owners[(start + step) % len(self._owners)]
            if owner not in walk:
                walk.append(owner)
                if len(walk) == self._replicas:
                    break
        bound = math.ceil(self._load_factor * (sum(loads) + 1) / self._replicas)
        for position, index in enumerate(walk):
            if loads[index] + 1 <= bound:
                return [index, *walk[:position], *walk[position + 1 :]]
        return walk
