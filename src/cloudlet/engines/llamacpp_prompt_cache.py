"""Host-memory cache of sequence KV states: prompt prefixes that outlive their slot.

A slot's KV cells are the only prompt cache the batched engine has on the device; with more
conversations than slots, a chat history is overwritten long before its next turn arrives.
Before a slot drops a sizeable part of its cells, the scheduler saves the sequence's state here
(``llama_state_seq_get_data``: its cells' K and V, a few KB a token); a later prompt extending a
saved one gets the state written back into its slot (``llama_state_seq_set_data``) instead of
recomputing it. Entries are kept least recently used first, within a byte budget. llama-server
does the same with its RAM prompt cache.

Used on the decode thread only.
"""

from __future__ import annotations

import bisect
import ctypes
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp

log = logging.getLogger(__name__)

SAVE_MIN_TOKENS = 32  # smaller states are cheaper to recompute than to keep


@dataclass(eq=False)
class CacheEntry:
    tokens: tuple[int, ...]  # the sequence's tokens, positions 0..
    state: ctypes.Array[ctypes.c_char]
    size: int


class PromptCache:
    """Saved sequence states keyed by their tokens, least recently used evicted first.

    Entries are kept sorted by their tokens and none is a prefix of another, so the entry
    sharing the longest prefix with a prompt sits next to where the prompt would sort: a
    lookup is a bisection, not a scan (hundreds of entries fit the budget).
    """

    def __init__(self, ctx: Any, budget_bytes: int) -> None:
        self._ctx = ctx
        self._budget = budget_bytes
        self._lru: OrderedDict[tuple[int, ...], CacheEntry] = OrderedDict()
        self._sorted: list[tuple[int, ...]] = []
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._lru)

    def save(self, seq_id: int, tokens: list[int]) -> None:
        """Keep the state of ``seq_id``, whose cells hold ``tokens``; no-op when not worth it."""
        if len(tokens) < SAVE_MIN_TOKENS or self._budget <= 0:
            return
        key = tuple(tokens)
        i = bisect.bisect_left(self._sorted, key)
        if i < len(self._sorted) and self._sorted[i][: len(key)] == key:
            self._lru.move_to_end(self._sorted[i])  # already kept, maybe as part of more
            return
        size = llama_cpp.llama_state_seq_get_size(self._ctx, seq_id)
        if not 0 < size <= self._budget:
            return
        # create_string_buffer: ~20x faster than a zeroed c_uint8 array of a few MB
        state = ctypes.create_string_buffer(size)
        if llama_cpp.llama_state_seq_get_data(self._ctx, _bytes_ptr(state), size, seq_id) != size:
            log.warning("could not save the KV state of sequence %d", seq_id)
            return
        if i > 0 and key[: len(self._sorted[i - 1])] == self._sorted[i - 1]:
            self._drop(self._sorted[i - 1])  # a prefix of the new entry: it covers it
        bisect.insort(self._sorted, key)
        self._lru[key] = CacheEntry(key, state, size)
        self._bytes += size
        while self._bytes > self._budget:
            self._drop(next(iter(self._lru)))

    def best(self, prompt: list[int], limit: int) -> tuple[CacheEntry | None, int]:
        """The entry sharing the longest prefix with ``prompt`` (at most ``limit`` tokens)."""
        key = tuple(prompt[:limit])
        i = bisect.bisect_left(self._sorted, key)
        best, best_n = None, 0
        for neighbour in self._sorted[max(0, i - 1) : i + 1]:
            n = common_prefix(neighbour, key, limit)
            if n > best_n:
                best, best_n = self._lru[neighbour], n
        return best, best_n

    def restore(self, entry: CacheEntry, seq_id: int) -> bool:
        """Write ``entry`` into ``seq_id``'s cells (replacing them); False if llama.cpp refused."""
        done = llama_cpp.llama_state_seq_set_data(
            self._ctx, _bytes_ptr(entry.state), entry.size, seq_id
        )
        if done != entry.size:
            log.warning("could not restore a saved KV state into sequence %d", seq_id)
            return False
        self._lru.move_to_end(entry.tokens)
        return True

    def _drop(self, key: tuple[int, ...]) -> None:
        self._bytes -= self._lru.pop(key).size
        del self._sorted[bisect.bisect_left(self._sorted, key)]


def common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """How many leading tokens ``a`` and ``b`` share, counting at most ``limit``."""
    end = min(len(a), len(b), limit)
    n = 0
    while n < end and a[n] == b[n]:
        n += 1
    return n


def _bytes_ptr(buffer: ctypes.Array[ctypes.c_char]) -> Any:
    return ctypes.cast(buffer, ctypes.POINTER(ctypes.c_uint8))
