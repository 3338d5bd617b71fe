"""The ledger as one object that an app's lifespan (or a CLI command) opens and closes.

    ledger = await Ledger.open(storage, admin_key=os.environ.get("CLOUDLET_ADMIN_KEY"))
    ledger.keys        # KeyStore: create / authenticate / list / revoke
    ledger.writer      # LedgerWriter: record(row) on the request path, never awaits
    ledger.responses   # ResponseStore: stored Responses API answers
    await ledger.report(by="team", since=...)
    await ledger.close()   # writes what is pending, then disconnects

Opening migrates the schema to the newest revision (see :mod:`cloudlet.ledger.migrate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from cloudlet.config.storage import StorageSpec
from cloudlet.errors import StorageUnavailable
from cloudlet.ledger import reports
from cloudlet.ledger.db import (
    create_engine,
    default_ledger_url,
    display_url,
    password_of,
    schema_of,
)
from cloudlet.ledger.keys import KeyStore
from cloudlet.ledger.migrate import upgrade
from cloudlet.ledger.responses import ResponseStore
from cloudlet.ledger.writer import LedgerWriter


class Ledger:
    def __init__(self, engine: AsyncEngine, url: str, keys: KeyStore, writer: LedgerWriter) -> None:
        self.engine = engine
        self.url = url
        self.keys = keys
        self.writer = writer
        self.responses = ResponseStore(engine)

    @classmethod
    async def open(
        cls,
        storage: StorageSpec | str | None = None,
        *,
        admin_key: str | None = None,
        migrate: bool = True,
        start_writer: bool = True,
        key_cache_ttl: float = 5.0,
    ) -> Ledger:
        """Open (and migrate) the ledger that ``storage`` names; default: SQLite in the user
        data directory. ``start_writer=False`` for readers such as ``cloudlet usage``.

        ``${VAR}`` references in the URL are read from the environment now (an unset one
        raises :class:`~cloudlet.errors.SpecError`); a database that cannot be reached raises
        :class:`~cloudlet.errors.StorageUnavailable`, whose message names it without its
        password."""
        spec = storage if isinstance(storage, StorageSpec) else StorageSpec(ledger=storage)
        url = spec.resolved().ledger or default_ledger_url()
        try:
            engine = create_engine(url)
        except OSError as exc:  # the SQLite file's directory cannot be made
            raise _unavailable(url, exc) from exc
        try:
            if migrate:
                await upgrade(engine, schema=schema_of(url))
        except (OSError, TimeoutError, OperationalError, InterfaceError) as exc:
            await engine.dispose()
            raise _unavailable(url, exc) from exc
        except BaseException:
            await engine.dispose()
            raise
        writer = LedgerWriter(
            engine, batch_rows=spec.ledger_batch_rows, flush_ms=spec.ledger_flush_ms
        )
        if start_writer:
            writer.start()
        keys = KeyStore(engine, admin_key=admin_key, cache_ttl=key_cache_ttl)
        return cls(engine, url, keys, writer)

    @property
    def display_url(self) -> str:
        """The URL without its password, for the banner."""
        return display_url(self.url)

    async def report(
        self, *, by: reports.GroupBy = "team", since: datetime | None = None
    ) -> list[reports.UsageGroup]:
        return await reports.usage_report(self.engine, by=by, since=since)

    async def request_rows(self, request_id: str) -> list[dict[str, Any]]:
        """The row(s) of a request, by its ``x-request-id`` (ours, or the client's own)."""
        return await reports.rows_of_request(self.engine, request_id)

    async def write_csv(self, out: TextIO, *, since: datetime | None = None) -> int:
        return await reports.write_rows_csv(self.engine, out, since=since)

    async def spent_since(self, key_id: str, since: datetime, currency: str) -> Decimal:
        """A :data:`~cloudlet.counters.BudgetSeed`: pass ``ledger.spent_since`` to the counters."""
        return await reports.spent_since(self.engine, key_id, since, currency)

    async def spent_on(
        self,
        targets: Sequence[str],
        since: datetime,
        currency: str,
        exclude_routes: Sequence[str] = (),
    ) -> Decimal:
        """A route budget's seed: pass ``ledger.spent_on`` to ``Gateway.seed_budgets``."""
        return await reports.spent_on(self.engine, targets, since, currency, exclude_routes)

    async def close(self) -> None:
        try:
            await self.writer.close()
        finally:
            await self.engine.dispose()


def _unavailable(url: str, exc: BaseException) -> StorageUnavailable:
    """The ledger cannot be opened: one line naming the database (never its password)."""
    why = type(getattr(exc, "orig", None) or exc).__name__
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    secret = password_of(url)
    if lines and not (secret and secret in lines[0]):
        why = f"{why}: {lines[0][:200]}"
    return StorageUnavailable(f"cannot open the ledger at {display_url(url)} ({why})")
