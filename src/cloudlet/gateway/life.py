"""One request's life, from arrival to its one record.

A :class:`RequestLife` is made when a request arrives (the API layer gives it the request id
and arrival time) and is carried through the pipeline: tenancy fills in the tenant, the router
the attempts and where it ran, the stream's metering the tokens and the first token's time.
:meth:`RequestLife.end` runs exactly once however the request ends (answered, refused, failed,
cancelled): it prices the usage, makes the :class:`~cloudlet.gateway.record.RequestRecord`,
hands it to every sink (the ledger's row among them) and then settles the key's reservation.
Nothing else settles or records a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cloudlet.domain import GenerationRequest, Usage
from cloudlet.errors import CloudletError
from cloudlet.gateway.record import (
    AttemptRecord,
    AttemptTrace,
    Operation,
    RequestRecord,
    Sinks,
    Status,
    Tracer,
)
from cloudlet.pricing import Price

if TYPE_CHECKING:
    from cloudlet.gateway.accounting import Accounting, Admission
    from cloudlet.gateway.prices import Prices
    from cloudlet.ledger.keys import Tenant

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Arrival:
    """When and as what a request arrived: its id (ours, or the client's ``x-request-id``
    when well-formed), the wall clock (UTC) and the monotonic clock at arrival."""

    request_id: str
    ts: datetime
    started: float

    @classmethod
    def now(cls, request_id: str) -> Arrival:
        return cls(request_id, datetime.now(UTC), time.monotonic())


class _NoTrace:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def end(self, error: str | None) -> None:
        return None


_NO_TRACE = _NoTrace()


class Recorder:
    """Per app: begins each request's life and turns it into its record at the end.

    ``prices`` prices every request (with or without a ledger); ``accounting`` (with keys and
    a ledger) reserves and settles the keys' limits; ``sinks`` receive every record;
    ``tracer`` follows requests while they run (None: tracing off).
    """

    def __init__(
        self,
        prices: Prices,
        *,
        sinks: Sinks | None = None,
        tracer: Tracer | None = None,
        currency: str = "USD",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prices = prices
        self.sinks = sinks if sinks is not None else Sinks()
        self.tracer = tracer
        self.currency = currency
        self.accounting: Accounting | None = None
        self.clock = clock

    def begin(
        self, arrival: Arrival, operation: Operation, model: str, *, stream: bool = False
    ) -> RequestLife:
        return RequestLife(self, arrival, operation, model, stream=stream)


@dataclass(slots=True, eq=False)
class RequestLife:
    """A request while it runs. Fields fill in as it goes; :meth:`end` makes its record."""

    recorder: Recorder
    arrival: Arrival
    operation: Operation
    model: str
    stream: bool = False
    tenant: Tenant | None = None
    route: str | None = None
    admission: Admission | None = None
    prices: dict[str, tuple[Price, Price]] = field(default_factory=dict)
    target: str | None = None
    provider: str | None = None
    spilled: bool = False
    first_token: float | None = None  # monotonic
    deltas: int = 0
    usage: Usage | None = None
    finish_reason: str | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    trace: object | None = None  # the tracer's state (a span), when tracing is on
    record: RequestRecord | None = None  # set once, by end()

    @property
    def request_id(self) -> str:
        return self.arrival.request_id

    # --- while it runs ---------------------------------------------------------------------

    def start(self, request: GenerationRequest | None) -> None:
        """Admitted: it is going to run (the trace's span starts here)."""
        tracer = self.recorder.tracer
        if tracer is not None:
            tracer.start(self, request)

    def attempt(self, target: str, provider: str) -> _Attempt:
        """An upstream attempt begins; end it with :meth:`_Attempt.end`."""
        tracer = self.recorder.tracer
        trace = tracer.attempt(self, target, provider) if tracer is not None else _NO_TRACE
        return _Attempt(self, target, provider, time.time(), trace)

    def served(self, target: str, provider: str, spilled: bool) -> None:
        self.target, self.provider, self.spilled = target, provider, spilled

    def token(self) -> None:
        """A piece of output arrived (about one token)."""
        if self.first_token is None:
            self.first_token = self.recorder.clock()
        self.deltas += 1

    # --- the end ---------------------------------------------------------------------------

    async def end(
        self, status: Status, error: str | None = None, *, http_status: int | None = None
    ) -> RequestRecord | None:
        """Price, record and settle, once; later calls return the first record."""
        raise NotImplementedError  # filled in by the request-record commit

    async def fail(self, exc: BaseException) -> RequestRecord | None:
        """End with what ``exc`` says: its code and HTTP status; a cancellation is
        ``cancelled``."""
        if isinstance(exc, asyncio.CancelledError):
            return await self.end("cancelled", "cancelled", http_status=499)
        if isinstance(exc, CloudletError):
            return await self.end("error", exc.code or exc.type, http_status=exc.status)
        return await self.end("error", type(exc).__name__, http_status=500)


@dataclass(slots=True, eq=False)
class _Attempt:
    life: RequestLife
    target: str
    provider: str
    started: float
    trace: AttemptTrace
    done: bool = False

    def end(self, error: str | None) -> None:
        if self.done:
            return
        self.done = True
        self.trace.end(error)
        self.life.attempts.append(
            AttemptRecord(self.target, self.provider, self.started, time.time(), error)
        )
