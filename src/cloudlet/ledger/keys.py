"""Tenants and API keys: create (the plaintext is shown once), authenticate, list, revoke.

A key is ``sk-cl-`` and 43 URL-safe characters: 256 random bits. The database keeps only its
SHA-256 and its first 12 characters (to show in lists and to find candidates). A plain, fast
hash is the right tool for random keys: a slow password hash (bcrypt, argon2) protects
*guessable* secrets and would add tens of milliseconds to every request, while inverting
SHA-256 over 256 random bits is out of reach, salt or not. Candidates that share a prefix are
compared with :func:`hmac.compare_digest`, in constant time.

Authentication is on the hot path, so records are cached by prefix for ``cache_ttl`` seconds
(also when nothing matched, with a bounded cache, so that random keys cannot hammer the
database). A revocation takes effect at once in the process that revoked and within
``cache_ttl`` in other replicas.

The admin key (``CLOUDLET_ADMIN_KEY``, read by the caller at start-up and passed in) is
accepted everywhere and never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cloudlet.counters.base import Limits, Period
from cloudlet.errors import StorageUnavailable
from cloudlet.ledger.tables import api_keys
from cloudlet.pricing import MAX_AMOUNT, Money

KEY_PREFIX = "sk-cl-"
_PREFIX_LEN = 12
_KEY_LEN = len(KEY_PREFIX) + 43
_CACHE_MAX = 10_000
_INT32 = 2**31 - 1  # rpm and tpm columns


@dataclass(frozen=True, slots=True)
class Tenant:
    """Who is calling: a key's team, scope and limits. ``key_id`` is ``None`` for the admin
    key and for open mode (no keys, loopback), where nothing is limited."""

    key_id: str | None
    team: str
    models: frozenset[str] | None = None
    limits: Limits = field(default_factory=Limits)
    is_admin: bool = False

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    @classmethod
    def admin(cls) -> Tenant:
        return _ADMIN

    @classmethod
    def anonymous(cls) -> Tenant:
        """Open mode: no key exists and the server listens on loopback only."""
        return _ANONYMOUS


# Immutable, so shared: asked for on every request of the admin key or in open mode.
_ADMIN = Tenant(key_id=None, team="admin", is_admin=True)
_ANONYMOUS = Tenant(key_id=None, team="local")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key, as lists show it (never the key itself)."""

    id: str
    prefix: str
    team: str
    models: tuple[str, ...] | None
    limits: Limits
    created_at: datetime
    revoked_at: datetime | None

    def tenant(self) -> Tenant:
        models = frozenset(self.models) if self.models is not None else None
        return Tenant(key_id=self.id, team=self.team, models=models, limits=self.limits)

    def as_json(self) -> dict[str, Any]:
        """For ``keys list --json`` and the admin API; money as a decimal string."""
        budget = self.limits.budget
        return {
            "id": self.id,
            "prefix": self.prefix,
            "team": self.team,
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.limits.rpm,
            "tpm": self.limits.tpm,
            "budget": f"{budget.amount.normalize():f}" if budget is not None else None,
            "currency": budget.currency if budget is not None else None,
            "period": self.limits.period if budget is not None else None,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class CreatedKey:
    record: KeyRecord
    key: str  # the plaintext: show it once, store it nowhere


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


#: The stored keys that share a prefix: (key hash, its tenant), the tenant built once.
_Candidates = list[tuple[str, Tenant]]


class KeyStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        admin_key: str | None = None,
        cache_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._admin_hash = hash_key(admin_key) if admin_key else None
        self._ttl = cache_ttl
        self._clock = clock
        # prefix -> (expires, its candidates)
        self._cache: dict[str, tuple[float, _Candidates]] = {}
        self._loading: dict[str, asyncio.Task[_Candidates]] = {}
        self._changes = 0  # create and revoke count up: a lookup begun before is not cached
        self._any: tuple[float, bool] | None = None
        self._ever = False  # a key was created (see any_created)
        self._ever_checked = float("-inf")  # until when "no key ever" is trusted

    async def create(
        self,
        team: str,
        *,
        models: Iterable[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: Money | None = None,
        period: Period = "month",
        now: datetime | None = None,
    ) -> CreatedKey:
        if not team or len(team) > 128 or not team.isprintable():
            raise ValueError("a key needs a team: 1 to 128 printable characters")
        for limit in (rpm, tpm):
            if limit is not None and not 1 <= limit <= _INT32:
                raise ValueError(f"rpm and tpm must be from 1 to {_INT32}")
        if budget is not None and not (
            budget.amount.is_finite() and 0 <= budget.amount <= MAX_AMOUNT
        ):
            raise ValueError(f"a budget must be from 0 to {MAX_AMOUNT}")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        scope = sorted(set(models)) if models is not None else None
        values: dict[str, Any] = {
            "id": "key_" + secrets.token_hex(8),
            "key_hash": hash_key(key),
            "prefix": key[:_PREFIX_LEN],
            "team": team,
            "models": scope,
            "rpm": rpm,
            "tpm": tpm,
            "budget_nanos": budget.nanos if budget is not None else None,
            "currency": budget.currency if budget is not None else "USD",
            "period": period,
            "created_at": now or datetime.now(UTC),
            "revoked_at": None,
        }
        async with self._engine.begin() as conn:
            await conn.execute(api_keys.insert().values(**values))
        self._any = None
        self._ever = True
        self._forget(values["prefix"])
        return CreatedKey(_record(values), key)

    async def authenticate(self, token: str) -> Tenant | None:
        """The tenant for ``token``, or ``None`` (unknown, revoked or malformed)."""
        digest = hash_key(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Tenant.admin()
        if len(token) != _KEY_LEN or not token.startswith(KEY_PREFIX):
            return None
        found: Tenant | None = None
        for stored, tenant in await self._candidates(token[:_PREFIX_LEN]):
            if hmac.compare_digest(digest, stored) and found is None:
                found = tenant
        return found

    async def list(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_record(row) for row in rows]

    async def revoke(self, key_id: str, *, now: datetime | None = None) -> bool:
        """Revoke a key; ``False`` if no such key is active."""
        query = (
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now or datetime.now(UTC))
            .returning(api_keys.c.prefix)
        )
        async with self._engine.begin() as conn:
            prefix = (await conn.execute(query)).scalar_one_or_none()
        if prefix is None:
            return False
        self._forget(prefix)
        self._any = None
        return True

    async def has_keys(self) -> bool:
        """Whether any active key exists (then every request needs one); cached like keys."""
        now = self._clock()
        if self._any is not None and self._any[0] > now:
            return self._any[1]
        query = select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)
        async with self._reading() as conn:
            found = (await conn.execute(query)).first() is not None
        self._any = (now + self._ttl, found)
        return found

    async def any_created(self) -> bool:
        """Whether a key was ever created here, revoked ones included: open mode ends for good
        with the first key. Once true it is never asked again (rows are never deleted)."""
        if self._ever:
            return True
        now = self._clock()
        if self._ever_checked > now:
            return False
        async with self._reading() as conn:
            found = (await conn.execute(select(api_keys.c.id).limit(1))).first() is not None
        self._ever = found
        self._ever_checked = now + self._ttl
        return found

    async def _candidates(self, prefix: str) -> _Candidates:
        hit = self._cache.get(prefix)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        # One lookup per prefix at a time: when a busy key's entry expires, every request in
        # flight with it would otherwise query at once (each on a connection of its own).
        loading = self._loading.get(prefix)
        if loading is None:
            loading = asyncio.get_running_loop().create_task(self._load(prefix))
            self._loading[prefix] = loading
            loading.add_done_callback(functools.partial(self._loaded, prefix))
        # Shielded: a caller that is cancelled must not cancel the lookup the others wait for.
        return await asyncio.shield(loading)

    async def _load(self, prefix: str) -> _Candidates:
        changes, now = self._changes, self._clock()
        query = select(api_keys).where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
        async with self._reading() as conn:
            rows = (await conn.execute(query)).mappings().all()
        found = [(row["key_hash"], _record(row).tenant()) for row in rows]
        if changes == self._changes:  # else a key was created or revoked meanwhile
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[prefix] = (now + self._ttl, found)
        return found

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a lookup on the request path: a database that is down or does not
        answer is a 503 (:class:`~cloudlet.errors.StorageUnavailable`), not a 500."""
        try:
            async with self._engine.connect() as conn:
                yield conn
        except (OperationalError, InterfaceError, OSError, TimeoutError) as exc:
            raise StorageUnavailable(
                "API keys cannot be checked right now (the ledger's database does not answer). "
                "Please retry shortly."
            ) from exc

    def _loaded(self, prefix: str, task: asyncio.Task[_Candidates]) -> None:
        if self._loading.get(prefix) is task:
            del self._loading[prefix]
        if not task.cancelled():
            task.exception()  # its waiters got it; marks it retrieved even if none is left

    def _forget(self, prefix: str) -> None:
        """After a change to the keys with ``prefix``: the next request looks them up anew."""
        self._changes += 1
        self._cache.pop(prefix, None)
        self._loading.pop(prefix, None)


def _record(row: Any) -> KeyRecord:
    budget = row["budget_nanos"]
    limits = Limits(
        rpm=row["rpm"],
        tpm=row["tpm"],
        budget=Money.from_nanos(budget, row["currency"]) if budget is not None else None,
        period=row["period"],
    )
    models = row["models"]
    return KeyRecord(
        id=row["id"],
        prefix=row["prefix"],
        team=row["team"],
        models=tuple(models) if models is not None else None,
        limits=limits,
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
