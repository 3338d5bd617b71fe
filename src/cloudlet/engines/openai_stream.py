"""A stream whose first event was read ahead, so that failures before it could fail over.

Returned by ``generate`` once the first event is in hand. It is a class rather than another
async generator on purpose: an async generator that was never started ignores ``aclose``, so a
wrapper generator that a caller drops before iterating (a client that disconnects before the
first byte) would never release what the started stream underneath holds. Here ``aclose``
always reaches the underlying, already started, stream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, TypeVar

E = TypeVar("E")


class PrimedStream(AsyncGenerator[E, None]):
    def __init__(self, first: E, rest: AsyncGenerator[E, None]) -> None:
        self._first: list[E] = [first]
        self._rest = rest

    def __aiter__(self) -> PrimedStream[E]:
        return self

    async def __anext__(self) -> E:
        if self._first:
            return self._first.pop()
        return await self._rest.__anext__()

    async def asend(self, value: None) -> E:
        return await self.__anext__()

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None) -> E:
        self._first.clear()
        return await self._rest.athrow(typ, val, tb)

    async def aclose(self) -> None:
        self._first.clear()
        await self._rest.aclose()
