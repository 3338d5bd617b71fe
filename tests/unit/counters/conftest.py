from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from cloudlet.counters import Counters, FakeClock
from tests.unit.counters.backends import BACKENDS, open_backend

#: 2025-06-15 12:00:00 UTC: midday, mid-month, so periods end at known distances.
NOON = datetime(2025, 6, 15, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def counters(backend: str, clock: FakeClock) -> AsyncIterator[Counters]:
    async with open_backend(backend, clock) as opened:
        yield opened
