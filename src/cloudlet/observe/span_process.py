"""The server's span exporter: a child process that encodes and exports the finished spans.

Encoding spans as OTLP is Python work that holds the GIL; with the SDK's spans and encoder it
was about 250 microseconds per request on the event loop or beside it, a third of what a
gateway serves. :class:`SpanProcess` moves it out: the tracer's finished spans
(:class:`~cloudlet.observe.spans.SpanData`, plain tuples) are gathered on the loop and sent
every :data:`FLUSH_S` (or every :data:`BATCH` spans) down a pipe, pickled, to
``python -m cloudlet.observe.span_process``, which hands them to the writers of the exporters
``OTEL_*`` names (it inherits the environment): OTLP encoded by cloudlet
(:class:`~cloudlet.observe.otlp.OtlpWriter`, about 20 microseconds per request), the console
through the SDK's spans (:class:`~cloudlet.observe.spans.SpanWriter`). Sending costs the loop
a few microseconds per request.

The child runs at a lower priority (:data:`NICE`): on a machine whose CPUs are all busy
serving, the export waits rather than the server slowing down. Measured under wrk on 2 cores
(with the SDK's encoding), that took tracing's cost from 16 % of requests/s to 5-7 % (the
child at the server's own priority took CPU the server and its clients needed).

Tracing never holds a request up: while the child is not running (before the app starts, or
after it died: it is started again after :data:`RESTART_S`) at most :data:`MAX_PENDING` spans
wait, and while it falls behind (a slow collector) at most :data:`MAX_BUFFERED` bytes do; what
does not fit is dropped and counted in a warning, as the SDK's own queue does. Closing sends
what is left, closes the pipe (the child exports the rest and exits) and waits for it, not
forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Sequence

from cloudlet.observe.otlp import OtlpWriter
from cloudlet.observe.spans import SpanData, SpanWriter, Writer, exporter

log = logging.getLogger(__name__)

#: Seconds between sends of the spans gathered on the loop.
FLUSH_S = 0.2
#: Spans gathered that are sent at once, without waiting for the next send.
BATCH = 512
#: Spans kept while no child runs (the SDK's default queue size).
MAX_PENDING = 2048
#: Bytes waiting in the pipe beyond which new spans are dropped (the child is behind).
MAX_BUFFERED = 8 << 20
#: Seconds before a child that died is started again.
RESTART_S = 5.0
#: The child's niceness: below the server's when CPU is short.
NICE = 10

_FRAME = struct.Struct("!I")


class SpanProcess:
    """Sends finished spans to a child process exporting them with ``exporters``."""

    def __init__(self, exporters: Sequence[str], *, restart_s: float = RESTART_S) -> None:
        self.exporters = tuple(exporters)
        self._restart_s = restart_s
        self._pending: list[SpanData] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._runner: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self.dropped = 0

    # --- on the request's path -------------------------------------------------------------

    def put(self, spans: list[SpanData]) -> None:
        self._pending.extend(spans)
        if len(self._pending) >= BATCH:
            self._flush()
        elif self._timer is None and self._proc is not None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        spans, self._pending = self._pending, []
        if not spans:
            return
        proc = self._proc
        stdin = proc.stdin if proc is not None and proc.returncode is None else None
        if stdin is None or stdin.is_closing():
            self._pending = spans[-MAX_PENDING:]  # kept for the next child
            self._drop(len(spans) - len(self._pending))
            return
        if stdin.transport.get_write_buffer_size() > MAX_BUFFERED:
            self._drop(len(spans))
            return
        body = pickle.dumps(spans, pickle.HIGHEST_PROTOCOL)
        stdin.write(_FRAME.pack(len(body)) + body)

    def _drop(self, count: int) -> None:
        if count <= 0:
            return
        if self.dropped == 0 or (self.dropped + count) // 10_000 > self.dropped // 10_000:
            log.warning(
                "tracing: %d spans dropped so far (the exporter process is behind or down)",
                self.dropped + count,
            )
        self.dropped += count

    # --- the child's life ------------------------------------------------------------------

    async def start(self) -> None:
        """Start the child, and keep one running until :meth:`close`."""
        if self._runner is None:
            await self._spawn()
            self._runner = asyncio.create_task(self._run(), name="cloudlet-span-exporter")

    async def _spawn(self) -> None:
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __name__, *self.exporters, stdin=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            log.error("tracing: cannot start the span exporter process: %s", exc)
            return
        self._flush()  # what waited for it

    async def _run(self) -> None:
        while not self._closing:
            proc = self._proc
            if proc is not None:
                code = await proc.wait()
                self._proc = None
                if self._closing:
                    return
                log.error(
                    "tracing: the span exporter process exited (%s); starting another in %.0fs",
                    code,
                    self._restart_s,
                )
            await asyncio.sleep(self._restart_s)
            if not self._closing:
                await self._spawn()

    async def close(self, wait_s: float) -> None:
        """Send what is left, let the child export it and exit; kill it after ``wait_s``."""
        self._closing = True
        self._flush()
        proc, runner = self._proc, self._runner
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), wait_s)
            except TimeoutError:
                log.warning("tracing: spans not exported within %.0fs of stopping", wait_s)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner


def writers(exporters: Sequence[str]) -> list[Writer]:
    """The writers of the exporters ``exporters`` names: OTLP encoded by cloudlet (see
    :mod:`cloudlet.observe.otlp`), the console through the SDK's spans."""
    return [
        OtlpWriter.from_env() if name == "otlp" else SpanWriter.exporting([exporter(name)])
        for name in exporters
    ]


def main(exporters: Sequence[str]) -> None:
    """The child: export the spans read from stdin until it closes, then the rest, and exit."""
    # The server stops it by closing the pipe (also when the server dies): a Ctrl-C or a
    # SIGTERM sent to the whole process group must not lose the spans still queued.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Exporting is background work: when the CPUs are all busy, serving goes first.
    os.nice(NICE)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s (span exporter) %(message)s")
    outs = writers(exporters)
    stdin = sys.stdin.buffer
    try:
        while (head := stdin.read(_FRAME.size)) and len(head) == _FRAME.size:
            (size,) = _FRAME.unpack(head)
            body = stdin.read(size)
            if len(body) < size:
                break
            spans = pickle.loads(body)  # noqa: S301 (our parent's pipe, nobody else's)
            for out in outs:
                out.put(spans)
    finally:
        for out in outs:
            out.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
