import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudlet.errors import AuthenticationError, PermissionDenied, UnprotectedServer
from cloudlet.gateway.tenancy import Tenancy
from cloudlet.ledger.store import Ledger


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = await Ledger.open(f"sqlite:///{tmp_path}/ledger.db", key_cache_ttl=0)
    yield opened
    await opened.close()


async def test_open_mode_on_loopback_until_a_key_exists(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    tenancy = Tenancy(ledger.keys, loopback=True)
    assert (await tenancy.resolve(None)).team == "local"
    assert (await tenancy.resolve("unused")).team == "local"  # clients' placeholder keys
    assert tenancy.mode == "open"
    assert (await tenancy.describe()).startswith("open")
    created = await ledger.keys.create("research")
    with caplog.at_level(logging.INFO, logger="cloudlet.gateway.tenancy"):
        with pytest.raises(AuthenticationError):
            await tenancy.resolve(None)
        with pytest.raises(AuthenticationError):
            await tenancy.resolve("unused")
    assert [r.getMessage() for r in caplog.records if "mode changed" in r.getMessage()] == [
        "auth: mode changed from open to api-key: an API key was created, so every request "
        "now needs a key (revoking keys does not reopen)"
    ]  # logged once
    assert (await tenancy.resolve(created.key)).team == "research"
    assert tenancy.mode == "api-key"
    assert (await tenancy.describe()).startswith("api-key")


async def test_revoking_the_last_key_never_reopens(ledger: Ledger) -> None:
    created = await ledger.keys.create("research")
    tenancy = Tenancy(ledger.keys, loopback=True)  # a fresh process: sees the key at once
    assert await ledger.keys.revoke(created.record.id)
    assert not await ledger.keys.has_keys()
    for token in (created.key, "anything", "sk-cl-" + "x" * 43, None):
        with pytest.raises(AuthenticationError):
            await tenancy.resolve(token)
    assert tenancy.mode == "api-key"
    # ... and a process started after the revocation stays closed too.
    with pytest.raises(AuthenticationError):
        await Tenancy(ledger.keys, loopback=True).resolve(None)


async def test_an_admin_key_closes_open_mode(ledger: Ledger) -> None:
    tenancy = Tenancy(ledger.keys, loopback=True, admin_key="admin-key")
    assert tenancy.mode == "api-key"
    with pytest.raises(AuthenticationError):
        await tenancy.resolve(None)
    with pytest.raises(AuthenticationError):
        await tenancy.resolve("anything")
    assert (await tenancy.resolve("admin-key")).is_admin


async def test_without_a_ledger_the_admin_key_authenticates() -> None:
    tenancy = Tenancy(None, loopback=False, admin_key="admin-key")
    assert (await tenancy.resolve("admin-key")).is_admin
    with pytest.raises(AuthenticationError):
        await tenancy.resolve("other")
    await tenancy.check_start()
    assert "CLOUDLET_ADMIN_KEY" in await tenancy.describe()


async def test_off_loopback_a_key_is_always_needed(ledger: Ledger) -> None:
    tenancy = Tenancy(ledger.keys, loopback=False, admin_key="admin-key")
    with pytest.raises(AuthenticationError):
        await tenancy.resolve(None)
    assert (await tenancy.resolve("admin-key")).is_admin


async def test_off_loopback_start_needs_a_way_to_authenticate(ledger: Ledger) -> None:
    for tenancy in (Tenancy(ledger.keys, loopback=False), Tenancy(None, loopback=False)):
        with pytest.raises(UnprotectedServer, match="CLOUDLET_ADMIN_KEY"):
            await tenancy.check_start()
        with pytest.raises(AuthenticationError):
            await tenancy.resolve(None)  # and it is closed anyway
    await Tenancy(ledger.keys, loopback=False, admin_key="a").check_start()
    created = await ledger.keys.create("t")
    await Tenancy(ledger.keys, loopback=False).check_start()  # an active key will do
    await ledger.keys.revoke(created.record.id)
    with pytest.raises(UnprotectedServer):
        await Tenancy(ledger.keys, loopback=False).check_start()
    await Tenancy(ledger.keys, loopback=True).check_start()  # loopback: closed, but may start


async def test_admin_api_needs_the_admin_key(ledger: Ledger) -> None:
    tenancy = Tenancy(ledger.keys, loopback=True, admin_key="admin-key")
    created = await ledger.keys.create("t")
    with pytest.raises(AuthenticationError):
        await tenancy.resolve_admin(None)
    with pytest.raises(PermissionDenied):
        await tenancy.resolve_admin(created.key)
    assert (await tenancy.resolve_admin("admin-key")).is_admin
