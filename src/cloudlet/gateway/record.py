"""One immutable record per request, and the sinks that receive it.

Every request that names a tenant (refused, failed and cancelled ones too) ends as exactly one
:class:`RequestRecord`, made in one place (:meth:`cloudlet.gateway.life.RequestLife.end`) and
handed to every sink: the ledger, Prometheus, the access log, the dashboard's live feed and the
trace. Sinks are called synchronously on the request's path, possibly while it is being
cancelled: ``record`` must not block, must not await, and should not raise (:class:`Sinks`
logs and swallows what one raises, so one broken sink cannot lose the others' records).

Tracing also needs the request's start and each upstream attempt while they happen (a span is
open while the request runs, and its context is propagated to remote engines);
:class:`Tracer` is that hook. A record never holds prompt or completion text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from cloudlet.ledger.writer import Status
from cloudlet.pricing import Money

if TYPE_CHECKING:
    from cloudlet.domain import GenerationRequest
    from cloudlet.gateway.life import RequestLife

log = logging.getLogger(__name__)

__all__ = ["AttemptRecord", "AttemptTrace", "RequestRecord", "Sink", "Sinks", "Status", "Tracer"]

#: The OpenTelemetry GenAI ``gen_ai.operation.name`` of the request.
Operation = Literal["chat", "text_completion", "embeddings"]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One try of one upstream (a replica of ``target``). ``error`` is the code of what
    failed it, None for the attempt that served the request. Times are seconds since the
    epoch."""

    target: str
    provider: str
    started: float
    ended: float
    error: str | None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What happened to one request, when it ended.

    ``model`` is what the client asked for (a model or a route); ``target`` the model that
    served it (None when none did). ``provider`` is the target's engine (``llamacpp``,
    ``openai``, ...). ``cost`` is what it cost, ``cloud_equivalent`` what the reference cloud
    price would have charged for the same tokens (same currency). ``http_status`` is the
    status the client got (200 for a stream that later broke: ``status`` and ``error`` say
    how it ended). ``ttft_s`` is None when no token was produced. ``queue_s`` is how long it
    waited for a slot of the engine that served it (a local worker's queue, a replica's
    ``parallel`` slots; part of ``ttft_s``), None when it did not finish or nobody measured.
    """

    request_id: str
    ts: datetime  # when it arrived (UTC)
    operation: Operation
    model: str
    route: str | None
    target: str | None
    provider: str | None
    spilled: bool
    cloud: bool
    key_id: str | None
    team: str | None
    status: Status
    error: str | None
    http_status: int
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    duration_s: float
    cost: Money
    cloud_equivalent: Money
    finish_reason: str | None = None
    queue_s: float | None = None
    attempts: tuple[AttemptRecord, ...] = ()
    client_request_id: str | None = None  # the client's own x-request-id, when it sent one

    @property
    def time_per_output_token_s(self) -> float | None:
        """Mean time between output tokens after the first (None with fewer than two)."""
        if self.ttft_s is None or self.completion_tokens < 2:
            return None
        return max(0.0, self.duration_s - self.ttft_s) / (self.completion_tokens - 1)


class Sink(Protocol):
    """Receives every request's record, once, as it ends. Must not block or await."""

    def record(self, record: RequestRecord) -> None: ...


class AttemptTrace(Protocol):
    """One upstream attempt's trace: entered around the call that starts the upstream request
    (so that its context reaches the upstream), ended once when the attempt ends."""

    def __enter__(self) -> None: ...

    def __exit__(self, *exc: object) -> None: ...

    def end(self, error: str | None) -> None: ...


class Tracer(Protocol):
    """Follows a request while it runs: ``start`` when it is admitted to run, ``attempt`` for
    each upstream try, ``finish`` with its record. State lives on the life (``life.trace``)."""

    def start(self, life: RequestLife, request: GenerationRequest | None) -> None: ...

    def attempt(self, life: RequestLife, target: str, provider: str) -> AttemptTrace: ...

    def finish(self, life: RequestLife, record: RequestRecord) -> None: ...


class Sinks:
    """Every sink of an app, in order; a sink that raises is logged and skipped."""

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self._sinks: list[Sink] = list(sinks)

    def add(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def record(self, record: RequestRecord) -> None:
        for sink in self._sinks:
            try:
                sink.record(record)
            except Exception:
                log.exception(
                    "sink %s failed on request %s", type(sink).__name__, record.request_id
                )
