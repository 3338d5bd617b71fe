"""The usage row of every request, written in batches off the hot path, exactly once.

:meth:`LedgerWriter.record` is synchronous and never waits: it appends the row to memory, so
the request path can call it from a ``finally`` block even while it is being cancelled (an
``await`` there would be cancelled too). A background task writes what has gathered whenever
``batch_rows`` rows are waiting or ``flush_ms`` has passed since the first of them, in one
``INSERT ... ON CONFLICT (request_id) DO NOTHING``; so a retried batch, or a request recorded
twice, never doubles a row (the first row for a ``request_id`` wins).

Durability window: a row is durable once its batch commits, at most ``flush_ms`` (plus the
write itself) after ``record``. A process killed with ``kill -9`` loses the rows of requests
that finished within that window, and no committed row. While the database is unreachable,
rows wait in memory and the batch is retried with backoff (a warning is logged); a row the
database refuses outright is dropped alone, with an error logged, so it cannot block the rows
behind it. On :meth:`close`, what cannot be written within ``close_timeout`` is logged as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from cloudlet.ledger.inserts import COLUMNS, Row, UsageInsert
from cloudlet.pricing import Money

log = logging.getLogger(__name__)

#: ``refused``: turned away before it ran (403, 404, 429, 503), cost 0, the code in ``error``.
Status = Literal["ok", "error", "cancelled", "refused"]
_MAX_BACKOFF_S = 5.0
_INT32 = 2**31 - 1
#: Errors that mean "not now" (the server is down, the file is locked), not "never".
_TRANSIENT = (OperationalError, InterfaceError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One request. ``cost`` and ``cloud_equivalent`` share a currency."""

    request_id: str
    ts: datetime
    key_id: str | None
    team: str | None
    model: str
    route: str | None
    target: str | None
    spilled: bool
    prompt_tokens: int
    completion_tokens: int
    cost: Money
    cloud_equivalent: Money
    latency_ms: int
    ttft_ms: int | None
    status: Status
    error: str | None = None
    cloud: bool = False  # ran on a `cloud: true` target (else on our own hardware)
    client_request_id: str | None = None  # the client's own x-request-id

    def values(self) -> Row:
        """The column values, in :data:`~cloudlet.ledger.inserts.COLUMNS` order, made to fit
        their columns."""
        if self.cost.currency != self.cloud_equivalent.currency:
            raise ValueError("cost and cloud_equivalent must share a currency")
        return (
            _request_id(self.request_id),
            self.ts,
            self.key_id,
            _cut(self.team),
            _cut(self.model) or "",
            _cut(self.route),
            _cut(self.target),
            self.spilled,
            _int32(self.prompt_tokens),
            _int32(self.completion_tokens),
            self.cost.nanos,
            self.cloud_equivalent.nanos,
            self.cost.currency,
            _int32(self.latency_ms),
            _int32(self.ttft_ms) if self.ttft_ms is not None else None,
            self.status,
            self.error[:64] if self.error else None,
            self.cloud,
            self.client_request_id[:64] if self.client_request_id else None,
        )

    def as_values(self) -> dict[str, Any]:
        return dict(zip(COLUMNS, self.values(), strict=True))


def _int32(value: int) -> int:
    return min(max(int(value), 0), _INT32)


def _cut(name: str | None) -> str | None:
    """Names longer than their column (128) are cut, so that one row cannot fail a batch."""
    return name[:128] if name is not None else None


def _request_id(value: str) -> str:
    """Request ids over 64 characters are stored as their SHA-256: still unique, still stable
    (a retried write of the same request still collides with the first)."""
    return value if len(value) <= 64 else hashlib.sha256(value.encode()).hexdigest()


class LedgerWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_rows: int = 256,
        flush_ms: int = 200,
        close_timeout: float = 10.0,
    ) -> None:
        self._engine = engine
        self._batch = batch_rows
        self._interval = flush_ms / 1000
        self._close_timeout = close_timeout
        self._pending: deque[Row] = deque()
        self._recorded = 0
        self._written = 0
        self._flush_to = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._insert = UsageInsert(engine.dialect)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

    def record(self, row: UsageRow) -> None:
        """Queue ``row``; returns at once. Raises only if the writer is closed."""
        if self._closing:
            raise RuntimeError("the ledger writer is closed")
        self._pending.append(row.values())
        self._recorded += 1
        self._wake.set()
        if len(self._pending) >= self._batch:
            self._full.set()

    async def flush(self) -> None:
        """Wait until every row recorded before this call is committed."""
        if self._task is None:
            raise RuntimeError("the ledger writer is not started")
        target = self._recorded
        self._flush_to = max(self._flush_to, target)
        self._full.set()  # do not wait for the interval
        async with self._progress:
            await self._progress.wait_for(lambda: self._written >= target)

    async def close(self) -> None:
        """Write what is pending (within ``close_timeout``) and stop."""
        self._closing = True
        self._full.set()
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self._close_timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            log.error("ledger: %d usage rows could not be written and are lost", self.pending)

    async def _run(self) -> None:
        while self._pending or not self._closing:
            await self._wake.wait()
            if not self._pending:
                self._wake.clear()
                continue
            urgent = (
                self._closing or self._written < self._flush_to or len(self._pending) >= self._batch
            )
            if not urgent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._interval)
            self._full.clear()
            batch = [self._pending[i] for i in range(min(self._batch, len(self._pending)))]
            await self._write(batch)
            for _ in batch:
                self._pending.popleft()
            async with self._progress:
                self._written += len(batch)
                self._progress.notify_all()

    async def _write(self, batch: list[Row]) -> None:
        """Insert ``batch``: retry while the database is unreachable (ON CONFLICT makes retries
        safe); if the database refuses the batch itself, isolate and drop the bad row(s) rather
        than block every later row behind them."""
        delay = 0.05
        while True:
            try:
                async with self._engine.begin() as conn:
                    await self._insert(conn, batch)
                return
            except _TRANSIENT as exc:
                log.warning(
                    "ledger: writing %d rows failed (%s); retrying in %.2fs, %d waiting",
                    len(batch),
                    type(exc).__name__,
                    delay,
                    len(self._pending),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)
            except Exception as exc:
                if len(batch) > 1:
                    for one in batch:
                        await self._write([one])
                    return
                log.error(
                    "ledger: dropping the row of request %s, which the database refuses: %s",
                    batch[0][0],
                    type(exc).__name__,
                )
                return
