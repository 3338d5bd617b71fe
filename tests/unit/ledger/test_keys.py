from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, cast

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cloudlet.counters import Limits
from cloudlet.errors import StorageUnavailable
from cloudlet.ledger.db import create_engine
from cloudlet.ledger.keys import KEY_PREFIX, KeyStore, Tenant
from cloudlet.ledger.store import Ledger
from cloudlet.ledger.tables import api_keys
from cloudlet.pricing import Money
from tests.conftest import free_port


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(ledger: Ledger) -> None:
    created = await ledger.keys.create("research", models=["smollm2"], rpm=60, tpm=10_000)
    assert created.key.startswith(KEY_PREFIX) and len(created.key) == len(KEY_PREFIX) + 43
    async with ledger.engine.connect() as conn:
        rows = (await conn.execute(select(api_keys))).mappings().all()
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0].values())
    assert created.key not in stored
    assert created.key[len(KEY_PREFIX) + 6 :] not in stored  # only a short prefix is kept
    assert rows[0]["key_hash"] == hashlib.sha256(created.key.encode()).hexdigest()
    assert rows[0]["prefix"] == created.key[:12] == created.record.prefix


async def test_authenticate_returns_the_tenant_with_scope_and_limits(ledger: Ledger) -> None:
    budget = Money(Decimal("12.50"), "EUR")
    created = await ledger.keys.create(
        "research", models=["b", "a"], rpm=60, tpm=1000, budget=budget, period="day"
    )
    tenant = await ledger.keys.authenticate(created.key)
    assert tenant == Tenant(
        key_id=created.record.id,
        team="research",
        models=frozenset({"a", "b"}),
        limits=Limits(rpm=60, tpm=1000, budget=budget, period="day"),
    )
    assert tenant.may_use("a") and not tenant.may_use("c")
    unscoped = await ledger.keys.authenticate((await ledger.keys.create("ops")).key)
    assert unscoped is not None and unscoped.may_use("anything")
    assert unscoped.limits.unlimited


@pytest.mark.parametrize(
    "token",
    ["", "sk-cl-", "Bearer x", KEY_PREFIX + "A" * 43, KEY_PREFIX + "A" * 44, "x" * 49],
)
async def test_unknown_or_malformed_keys_are_refused(ledger: Ledger, token: str) -> None:
    await ledger.keys.create("research")
    assert await ledger.keys.authenticate(token) is None


async def test_a_key_that_differs_in_its_last_character_is_refused(ledger: Ledger) -> None:
    key = (await ledger.keys.create("research")).key
    other = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert await ledger.keys.authenticate(other) is None


async def test_the_admin_key_is_accepted_and_never_stored(ledger: Ledger) -> None:
    tenant = await ledger.keys.authenticate("admin-secret-for-tests")
    assert tenant is not None and tenant.is_admin and tenant.may_use("any")
    assert await ledger.keys.list(include_revoked=True) == []
    assert not await ledger.keys.has_keys()


async def test_revoke_takes_effect_at_once_here_and_after_the_cache_ttl_elsewhere(
    ledger: Ledger,
) -> None:
    now = [0.0]
    replica = KeyStore(ledger.engine, cache_ttl=5.0, clock=lambda: now[0])
    created = await ledger.keys.create("research")
    assert await replica.authenticate(created.key) is not None  # cached in the replica now

    assert await ledger.keys.revoke(created.record.id)
    assert await ledger.keys.authenticate(created.key) is None
    assert await replica.authenticate(created.key) is not None  # still within its cache TTL
    now[0] += 5.0
    assert await replica.authenticate(created.key) is None
    assert not await ledger.keys.revoke(created.record.id)
    assert not await ledger.keys.revoke("key_unknown")


async def test_list_and_has_keys(ledger: Ledger) -> None:
    assert not await ledger.keys.has_keys()
    first = await ledger.keys.create("a")
    second = await ledger.keys.create("b", budget=Money(Decimal(5)))
    assert await ledger.keys.has_keys()
    assert [r.id for r in await ledger.keys.list()] == [first.record.id, second.record.id]
    await ledger.keys.revoke(first.record.id)
    active = await ledger.keys.list()
    assert [r.id for r in active] == [second.record.id]
    everything = await ledger.keys.list(include_revoked=True)
    assert everything[0].revoked_at is not None and everything[1].revoked_at is None
    assert active[0].limits.budget == Money(Decimal(5), "USD")
    await ledger.keys.revoke(second.record.id)
    assert not await ledger.keys.has_keys()


async def test_create_validates(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        await ledger.keys.create("")
    with pytest.raises(ValueError):
        await ledger.keys.create("a", rpm=0)
    with pytest.raises(ValueError):
        await ledger.keys.create("a", budget=Money(Decimal(-1)))


async def test_requests_that_miss_the_cache_together_look_the_key_up_once(
    ledger: Ledger,
) -> None:
    created = await ledger.keys.create("research")
    now = [0.0]
    replica = KeyStore(ledger.engine, cache_ttl=5.0, clock=lambda: now[0])
    queries: list[str] = []

    def count(*args: object) -> None:
        queries.append(str(args[2]))  # the statement

    event.listen(ledger.engine.sync_engine, "before_cursor_execute", count)
    try:
        for _ in range(2):  # a cold cache, then an expired one
            tenants = await asyncio.gather(*(replica.authenticate(created.key) for _ in range(20)))
            assert all(t is not None and t.team == "research" for t in tenants)
            now[0] += 5.0
    finally:
        event.remove(ledger.engine.sync_engine, "before_cursor_execute", count)
    assert sum("api_keys" in q for q in queries) == 2


class _GatedEngine:
    """An engine whose reads pause, after their query, until the test lets them go on."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.queried = asyncio.Event()
        self.go_on = asyncio.Event()

    def begin(self) -> Any:
        return self.engine.begin()

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn
        self.queried.set()
        await self.go_on.wait()


async def test_a_lookup_begun_before_a_revocation_is_not_cached(ledger: Ledger) -> None:
    gated = _GatedEngine(ledger.engine)
    store = KeyStore(cast(AsyncEngine, gated))
    created = await store.create("research")
    lookup = asyncio.ensure_future(store.authenticate(created.key))
    await gated.queried.wait()  # it found the key, and has not cached it yet
    assert await store.revoke(created.record.id)
    gated.go_on.set()
    await lookup
    assert await store.authenticate(created.key) is None  # revoked here: at once


async def test_a_database_that_is_down_is_storage_unavailable() -> None:
    engine = create_engine(f"postgresql://root@127.0.0.1:{free_port()}/test")
    keys = KeyStore(engine)
    try:
        for check in (
            keys.authenticate("sk-cl-" + "x" * 43),
            keys.has_keys(),
            keys.any_created(),
        ):
            with pytest.raises(StorageUnavailable):
                await check
    finally:
        await engine.dispose()
