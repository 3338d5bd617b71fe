from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudlet.ledger.store import Ledger
from tests.unit.ledger.stores import BACKENDS, ledger_url


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with ledger_url(request.param, tmp_path) as value:
        yield value


@pytest.fixture
async def ledger(url: str) -> AsyncIterator[Ledger]:
    opened = await Ledger.open(url, admin_key="admin-secret-for-tests")
    try:
        yield opened
    finally:
        await opened.close()
