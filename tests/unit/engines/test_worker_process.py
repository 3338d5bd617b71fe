"""The worker supervisor's pure parts: backoff, exit descriptions, log relay, the breakerless
replica of a supervised engine."""

from __future__ import annotations

import asyncio
import logging
import signal

import pytest

from cloudlet.config import ModelSpec
from cloudlet.domain import WorkerState
from cloudlet.engines.worker_process import Backoff, WorkerProcess, describe_exit
from cloudlet.gateway.breaker import CircuitBreaker
from cloudlet.gateway.targets import Replica


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(first_s=1, max_s=30)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (-signal.SIGSEGV, "was killed by SIGSEGV"),
        (-signal.SIGKILL, "was killed by SIGKILL"),
        (1, "exited with code 1"),
        (-200, "was killed by signal 200"),
    ],
)
def test_exits_are_described_in_words(code: int, words: str) -> None:
    assert describe_exit(code) == words


async def test_worker_log_lines_are_relogged_under_the_model_name(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    spec = ModelSpec(name="m", source="file:///x.gguf")
    process = WorkerProcess(spec, run_dir=tmp_path, token="t")  # type: ignore[arg-type]
    stream = asyncio.StreamReader()
    stream.feed_data(b"INFO\tcloudlet.x\tloaded\nERROR\tcloudlet.x\tboom\nTraceback (last)\n")
    stream.feed_eof()
    with caplog.at_level(logging.INFO, logger="cloudlet.worker"):
        await process._relay(stream)
    seen = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert seen == [
        (logging.INFO, "[m] loaded"),
        (logging.ERROR, "[m] boom"),
        (logging.ERROR, "[m] Traceback (last)"),  # a continuation keeps the level
    ]


class _Supervised:
    def __init__(self) -> None:
        self.up = True

    def is_up(self) -> bool:
        return self.up

    def worker_state(self) -> WorkerState:
        return WorkerState("up" if self.up else "restarting")


def test_a_supervised_engine_is_available_exactly_while_its_worker_is_up() -> None:
    engine = _Supervised()
    replica = Replica(engine, CircuitBreaker(1, 60.0, lambda: 0.0))  # type: ignore[arg-type]
    for _ in range(5):
        replica.breaker.failure()  # a crash fails what was in flight: no breaker to open
    assert replica.available()
    engine.up = False
    assert not replica.available()
