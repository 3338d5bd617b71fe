from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudlet.errors import AuthenticationError, PermissionDenied
from cloudlet.gateway.tenancy import Tenancy
from cloudlet.ledger.store import Ledger


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = await Ledger.open(f"sqlite:///{tmp_path}/ledger.db", admin_key="admin-key")
    yield opened
    await opened.close()


async def test_open_mode_on_loopback_until_a_key_exists(ledger: Ledger) -> None:
    tenancy = Tenancy(ledger.keys, loopback=True)
    assert (await tenancy.resolve(None)).team == "local"
    assert (await tenancy.resolve("unused")).team == "local"  # clients' placeholder keys
    assert "open" in await tenancy.mode()
    created = await ledger.keys.create("research")
    with pytest.raises(AuthenticationError):
        await tenancy.resolve(None)
    with pytest.raises(AuthenticationError):
        await tenancy.resolve("unused")
    assert (await tenancy.resolve(created.key)).team == "research"
    assert "required" in await tenancy.mode()


async def test_off_loopback_a_key_is_always_needed(ledger: Ledger) -> None:
    tenancy = Tenancy(ledger.keys, loopback=False)
    with pytest.raises(AuthenticationError):
        await tenancy.resolve(None)
    assert (await tenancy.resolve("admin-key")).is_admin


async def test_admin_api_needs_the_admin_key(ledger: Ledger) -> None:
    tenancy = Tenancy(ledger.keys, loopback=True)
    created = await ledger.keys.create("t")
    with pytest.raises(AuthenticationError):
        await tenancy.resolve_admin(None)
    with pytest.raises(PermissionDenied):
        await tenancy.resolve_admin(created.key)
    assert (await tenancy.resolve_admin("admin-key")).is_admin
