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
import os
import re
import time
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
from cloudlet.pricing import Money, Price

if TYPE_CHECKING:
    from cloudlet.gateway.accounting import Accounting, Admission
    from cloudlet.gateway.prices import Prices
    from cloudlet.ledger.keys import Tenant

log = logging.getLogger(__name__)


#: A client's ``x-request-id`` is kept when it looks like an id (else the request gets ours).
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~:+=-]{1,64}")


def new_request_id() -> str:
    """A new request's id: ``req-``, the time in milliseconds (12 hex digits), 80 random bits.

    Time first, like a UUIDv7: the ledger's unique index on ``request_id`` then grows at its
    end instead of at random places, which on SQLite makes a row's insert several times
    cheaper (and keeps doing so as the table grows). The random part keeps ids unique across
    requests in the same millisecond and across replicas.
    """
    return f"req-{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def client_request_id(value: str | None) -> str | None:
    """The client's ``x-request-id`` if it is well-formed (1-64 characters of letters, digits
    and ``._~:+=-``); None otherwise."""
    if value is None or _CLIENT_ID.fullmatch(value) is None:
        return None
    return value


@dataclass(slots=True, eq=False)
class Arrival:
    """When a request arrived and under which ids: ``request_id`` (ours, unique: the ledger
    row's id) and ``client_id`` (the client's well-formed ``x-request-id``, echoed back and
    kept with the row). ``life`` is the request's life once the pipeline began it (the API
    layer reads where it ran from it for an error's headers). ``traceparent`` and
    ``tracestate`` are the client's W3C trace context headers, as sent (the tracer checks
    them), for the request's span to continue."""

    request_id: str
    ts: datetime
    started: float  # monotonic
    client_id: str | None = None
    life: RequestLife | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def now(cls, client_id: str | None = None) -> Arrival:
        return cls(new_request_id(), datetime.now(UTC), time.monotonic(), client_id)

    @property
    def public_id(self) -> str:
        """The id the client sees in ``x-request-id``: its own, else ours."""
        return self.client_id or self.request_id


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

    ``prices`` prices every request (with or without a ledger); ``accounting`` (keys and a
    ledger) writes each record's ledger row and settles the keys' reservations; ``sinks``
    receive every record; ``tracer`` follows requests while they run (None: tracing off).
    ``currency`` is the deployment's: a refused request costs zero in it.
    """

    def __init__(
        self,
        prices: Prices,
        *,
        sinks: Sinks | None = None,
        tracer: Tracer | None = None,
        currency: str = "USD",
    ) -> None:
        self.prices = prices
        self.sinks = sinks if sinks is not None else Sinks()
        self.tracer = tracer
        self.currency = currency
        self.accounting: Accounting | None = None

    def begin(
        self, arrival: Arrival, operation: Operation, model: str, *, stream: bool = False
    ) -> RequestLife:
        life = RequestLife(self, arrival, operation, model, stream=stream)
        arrival.life = life
        return life


@dataclass(slots=True, eq=False)
class RequestLife:
    """A request while it runs. Fields fill in as it goes; :meth:`end` makes its record.

    ``prompt_bound`` and ``max_tokens`` are what the request may use at most (its prompt's
    bytes, its completion limit): usage an engine reports above them is charged at them, and
    a request that broke off before its usage arrived is charged its prompt's bound and a
    token per piece of output it sent.
    """

    recorder: Recorder
    arrival: Arrival
    operation: Operation
    model: str
    stream: bool = False
    tenant: Tenant | None = None
    route: str | None = None
    admission: Admission | None = None
    prices: dict[str, tuple[Price, Price]] = field(default_factory=dict)
    prompt_bound: int = 0
    max_tokens: int = 0
    target: str | None = None
    provider: str | None = None
    spilled: bool = False
    first_token: float | None = None  # monotonic
    deltas: int = 0
    usage: Usage | None = None
    finish_reason: str | None = None
    queued_s: float | None = None  # the serving engine's queue wait, as its stream reported
    attempts: list[AttemptRecord] = field(default_factory=list)
    trace: object | None = None  # the tracer's state (a span), when tracing is on
    record: RequestRecord | None = None  # set once, by end()

    @property
    def request_id(self) -> str:
        return self.arrival.request_id

    # --- while it runs ---------------------------------------------------------------------

    def start(self, request: GenerationRequest | None) -> None:
        """The tenant is known: from here on the request ends in a record (the trace's span
        starts here)."""
        tracer = self.recorder.tracer
        if tracer is not None:
            try:
                tracer.start(self, request)
            except Exception:
                log.exception("tracer failed to start request %s", self.request_id)

    def attempt(self, target: str, provider: str) -> AttemptLife:
        """An upstream attempt begins; end it with :meth:`AttemptLife.end`."""
        tracer = self.recorder.tracer
        trace = tracer.attempt(self, target, provider) if tracer is not None else _NO_TRACE
        return AttemptLife(self, target, provider, time.time(), trace)

    def served(self, target: str, provider: str, spilled: bool) -> None:
        self.target, self.provider, self.spilled = target, provider, spilled

    def token(self) -> None:
        """A piece of output arrived (about one token)."""
        if self.first_token is None:
            self.first_token = time.monotonic()
        self.deltas += 1

    # --- the end ---------------------------------------------------------------------------

    async def end(
        self, status: Status, error: str | None = None, *, http_status: int | None = None
    ) -> RequestRecord:
        """:meth:`close` and :meth:`settle`: the request's end, once."""
        record = self.close(status, error, http_status=http_status)
        await self.settle()
        return record

    async def fail(self, exc: BaseException) -> RequestRecord:
        """:meth:`close_with` ``exc`` and :meth:`settle`."""
        record = self.close_with(exc)
        await self.settle()
        return record

    def close(
        self, status: Status, error: str | None = None, *, http_status: int | None = None
    ) -> RequestRecord:
        """Price the usage and make the record; the ledger's row and every sink get it now,
        without awaiting anything (a client that leaves cancels its request, and each await
        on the way out may be cancelled again: the record must already exist). Once: later
        calls return the first record."""
        if self.record is not None:
            return self.record
        recorder = self.recorder
        prompt, completion = self._tokens(status)
        cost, reference = self._price(status, prompt, completion)
        tenant = self.tenant
        record = self.record = RequestRecord(
            request_id=self.request_id,
            ts=self.arrival.ts,
            operation=self.operation,
            model=self.model,
            route=self.route,
            target=self.target,
            provider=self.provider,
            spilled=self.spilled,
            cloud=recorder.prices.is_cloud(self.target or ""),
            key_id=tenant.key_id if tenant is not None else None,
            team=tenant.team if tenant is not None else None,
            status=status,
            error=error,
            http_status=http_status if http_status is not None else _STATUS[status],
            stream=self.stream,
            prompt_tokens=prompt,
            completion_tokens=completion,
            ttft_s=(
                self.first_token - self.arrival.started if self.first_token is not None else None
            ),
            duration_s=time.monotonic() - self.arrival.started,
            cost=cost,
            cloud_equivalent=reference,
            finish_reason=self.finish_reason,
            queue_s=self.queued_s,
            attempts=tuple(self.attempts),
            client_request_id=self.arrival.client_id,
        )
        if recorder.accounting is not None:
            recorder.accounting.record(record)  # the ledger's row, first
        recorder.sinks.record(record)
        if recorder.tracer is not None:
            try:
                recorder.tracer.finish(self, record)
            except Exception:
                log.exception("tracer failed to finish request %s", self.request_id)
        return record

    def close_with(self, exc: BaseException) -> RequestRecord:
        """:meth:`close` with what ``exc`` says: its code and HTTP status (a stream already
        answered 200); a cancellation is ``cancelled``. Our error raised before any upstream
        was tried (a route's spent cloud budget, every replica's circuit open) turned the
        request away: ``refused``, like the pipeline's own refusals."""
        answered = self.stream and self.target is not None
        if isinstance(exc, asyncio.CancelledError):
            return self.close("cancelled", "cancelled")
        if isinstance(exc, CloudletError):
            status = 200 if answered else exc.status
            how: Status = "error" if self.attempts else "refused"
            return self.close(how, exc.code or exc.type, http_status=status)
        return self.close("error", type(exc).__name__, http_status=200 if answered else 500)

    async def settle(self) -> None:
        """Settle the key's reservation with the recorded cost (after :meth:`close`; once).
        The counters complete a settle even when this await is cancelled."""
        record, admission = self.record, self.admission
        accounting = self.recorder.accounting
        if record is None or admission is None or accounting is None:
            return
        self.admission = None  # once
        await accounting.settle(
            admission,
            tokens=record.prompt_tokens + record.completion_tokens,
            cost=record.cost,
            request_id=self.request_id,
        )

    def _tokens(self, status: Status) -> tuple[int, int]:
        """What to charge for: the reported usage within the bounds; when the stream broke
        off before its usage arrived, the prompt's bound and a token per piece sent."""
        usage = self.usage
        if usage is not None:
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
        elif self.target is not None and status != "refused":
            prompt, completion = self.prompt_bound, self.deltas
        else:
            return 0, 0
        fitted = max(0, prompt), max(0, completion)
        if self.prompt_bound:
            fitted = min(fitted[0], self.prompt_bound), fitted[1]
        if self.max_tokens:
            fitted = fitted[0], min(fitted[1], self.max_tokens)
        if fitted != (prompt, completion):
            log.warning(
                "%s reported usage %d+%d outside the reserved bound; charged %d+%d",
                self.target,
                prompt,
                completion,
                *fitted,
            )
        return fitted

    def _price(self, status: Status, prompt: int, completion: int) -> tuple[Money, Money]:
        """(cost, cloud-equivalent cost) of the tokens, in the target's price's currency."""
        if status == "refused" or self.target is None:
            nothing = Money.zero(self.recorder.currency)
            return nothing, nothing
        priced = self.prices.get(self.target)
        if priced is None:
            priced = self.recorder.prices.of(self.target)
        price, reference = priced
        cost = price.cost(prompt, completion)
        if reference.currency != cost.currency:
            return cost, cost  # no reference in this currency: record the cost itself
        return cost, reference.cost(prompt, completion)


#: The HTTP status of a request that ended without an exception to say otherwise.
_STATUS: dict[Status, int] = {"ok": 200, "error": 500, "cancelled": 499, "refused": 400}


@dataclass(slots=True, eq=False)
class AttemptLife:
    """One upstream attempt while it runs; :meth:`end` records it (once)."""

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
        try:
            self.trace.end(error)
        except Exception:
            log.exception("tracer failed to end an attempt of %s", self.life.request_id)
        self.life.attempts.append(
            AttemptRecord(self.target, self.provider, self.started, time.time(), error)
        )


def error_code(exc: BaseException) -> str:
    """The code a record keeps for ``exc``."""
    if isinstance(exc, CloudletError):
        return exc.code or exc.type
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return type(exc).__name__
