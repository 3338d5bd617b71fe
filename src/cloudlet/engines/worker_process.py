"""One supervised engine worker process: start it, relay its log, restart it when it dies.

`cloudlet serve` runs each local model in a `cloudlet worker` process of its own (see
:mod:`cloudlet.cli.worker`), listening on a Unix socket in a private directory. A fault in C
code (a segfault, a ``GGML_ASSERT`` abort, the kernel's out-of-memory kill) then ends that
process only; this class notices at once (it waits on the process), restarts it with
exponential backoff, and says so in one line.

Safe mode: a worker that dies from a kernel-fault signal (SIGSEGV, SIGILL, SIGBUS, SIGFPE,
SIGABRT) before it is ready — loading, or on its first decode, which every engine runs as a
warm-up before it reports ready — is started again at once with llama.cpp's extra CPU buffer
types off (:mod:`cloudlet.engines.llamacpp_safe`). That is detected, not guessed from the
CPU's name; ``safe_mode: on/off`` in the model's spec forces either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from cloudlet.config import ModelSpec, Spec
from cloudlet.config.spec import ServerSpec
from cloudlet.config.storage import StorageSpec
from cloudlet.domain import WorkerState
from cloudlet.domain.types import WorkerStatus
from cloudlet.engines.llamacpp_safe import FAULT_ENV
from cloudlet.errors import EngineUnavailable

log = logging.getLogger("cloudlet.worker")
TOKEN_ENV = "CLOUDLET_WORKER_TOKEN"  # noqa: S105 - the variable's name, not a secret
LOG_SEPARATOR = "\t"
_KERNEL_FAULTS = frozenset(
    {signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT}
)
_LEVELS = {name: getattr(logging, name) for name in ("DEBUG", "INFO", "WARNING", "ERROR")}
_LEVELS["CRITICAL"] = logging.CRITICAL
_STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between restarts: ``first_s``, doubling up to ``max_s``; a worker that stayed up
    ``stable_s`` starts the sequence over."""

    first_s: float = 1.0
    max_s: float = 30.0
    stable_s: float = 60.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_s, self.first_s * 2 ** max(0, failures - 1)))


def killed_by_kernel_fault(returncode: int) -> bool:
    """Whether a process ended from a signal a crashing CPU kernel raises (SIGSEGV and kin)."""
    return returncode < 0 and -returncode in _KERNEL_FAULTS


def describe_exit(returncode: int) -> str:
    """How a process ended, in words: ``was killed by SIGSEGV`` / ``exited with code 1``."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


class WorkerProcess:
    def __init__(
        self,
        spec: ModelSpec,
        *,
        run_dir: Path,
        token: str,
        backoff: Backoff | None = None,
        load_timeout_s: float = 900.0,
    ) -> None:
        self.spec = spec
        self.socket = run_dir / "worker.sock"
        self._config = run_dir / "model.json"
        self._token = token
        self._backoff = backoff or Backoff()
        self._load_timeout_s = load_timeout_s
        self.safe_mode = spec.safe_mode == "on"
        self._state: WorkerState = WorkerState("stopped")
        self._process: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._supervisor: asyncio.Task[None] | None = None
        self._relays: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._tail: deque[str] = deque(maxlen=5)  # the worker's last warnings and errors

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def up(self) -> bool:
        return self._state.state == "up"

    def _set(
        self, state: WorkerStatus, *, restarts: int | None = None, last_exit: str | None = None
    ) -> None:
        pid = self._process.pid if self._process is not None else None
        old = self._state
        self._state = WorkerState(
            state,
            restarts=old.restarts if restarts is None else restarts,
            safe_mode=self.safe_mode,
            pid=pid if state in ("starting", "up") else None,
            last_exit=old.last_exit if last_exit is None else last_exit,
        )

    # --- start and stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker and wait until it serves; then supervise it. Raises
        :class:`EngineUnavailable` (with the worker's own last error) when it cannot load."""
        self._stopping = False
        self._write_config()
        try:
            await self._launch()
        except EngineUnavailable:
            self._set("failed")
            raise
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"supervise-{self.spec.name}"
        )

    async def stop(self) -> None:
        """Ask the worker to finish (SIGTERM: it drains), then kill it if it does not."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), _STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await asyncio.gather(*self._relays, return_exceptions=True)
        self._set("stopped")

    def kill(self, why: str) -> None:
        """End a worker that is alive but not answering; the supervisor restarts it."""
        process = self._process
        if process is not None and process.returncode is None and not self._stopping:
            log.error("model %s: the worker %s; killing it to restart", self.spec.name, why)
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    # --- one launch ----------------------------------------------------------------------------

    async def _launch(self) -> None:
        """Start a worker process and wait until it is ready; once more, in safe mode, when a
        kernel fault killed it while loading."""
        while True:
            process = await self._spawn()
            if await self._ready(process):
                self._set("up")
                return
            code = process.returncode
            assert code is not None
            fault = killed_by_kernel_fault(code)
            if fault and not self.safe_mode and self.spec.safe_mode == "auto":
                self.safe_mode = True
                log.warning(
                    "model %s: the worker %s on its first decode; restarting it in safe mode "
                    "(llama.cpp's extra CPU buffer types off: slower, but this CPU's kernels "
                    "crash). Set safe_mode: on for this model to start that way.",
                    self.spec.name,
                    describe_exit(code),
                )
                continue
            why = describe_exit(code)
            last = f": {self._tail[-1]}" if self._tail else ""
            raise EngineUnavailable(
                f"model {self.spec.name!r}: its worker {why} while loading{last}", retry_after=60
            )

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.socket.unlink(missing_ok=True)
        args = [
            sys.executable,
            "-m",
            "cloudlet",
            "worker",
            "--config",
            str(self._config),
            "--uds",
            str(self.socket),
            "--parent-pid",
            str(os.getpid()),
            "--safe-mode" if self.safe_mode else "--no-safe-mode",
        ]
        # The gateway's CLOUDLET_* settings describe the gateway's spec, not the worker's
        # one-model file: none of them is passed on but the token (and the test fault hook).
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDLET_")}
        env[TOKEN_ENV] = self._token
        if FAULT_ENV in os.environ:
            env[FAULT_ENV] = os.environ[FAULT_ENV]
        self._tail.clear()
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        self._process = process
        self._started_at = time.monotonic()
        self._set("starting")
        assert process.stdout is not None
        relay = asyncio.get_running_loop().create_task(self._relay(process.stdout))
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)
        return process

    async def _ready(self, process: asyncio.subprocess.Process) -> bool:
        """Wait until the worker's /ready says 200 (True) or the process ends (False)."""
        exited = asyncio.get_running_loop().create_task(process.wait())
        deadline = time.monotonic() + self._load_timeout_s
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket))
        try:
            async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
                while time.monotonic() < deadline:
                    if exited.done():
                        return False
                    with contextlib.suppress(httpx.HTTPError):
                        response = await client.get("http://worker/ready")
                        if response.status_code == 200:
                            return True
                    await asyncio.wait({exited}, timeout=0.1)
        finally:
            exited.cancel()
        process.kill()
        await process.wait()
        self._tail.append(f"not ready after {self._load_timeout_s:.0f}s")
        return False

    # --- supervision ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while True:
            process = self._process
            assert process is not None
            code = await process.wait()
            if self._stopping:
                return
            uptime = time.monotonic() - self._started_at
            failures = 1 if uptime >= self._backoff.stable_s else failures + 1
            delay = self._backoff.delay(failures)
            why = describe_exit(code)
            self._set("restarting", restarts=self._state.restarts + 1, last_exit=why)
            log.error(
                "model %s: the worker %s after %.0fs; requests in flight on it failed; "
                "restarting in %.0fs (restart %d)",
                self.spec.name,
                why,
                uptime,
                delay,
                self._state.restarts,
            )
            await asyncio.sleep(delay)
            try:
                await self._launch()
            except EngineUnavailable as exc:
                self._set("restarting")
                log.error("%s", exc.message)
                continue
            log.info(
                "model %s: the worker is back (pid %s%s)",
                self.spec.name,
                self._state.pid,
                ", safe mode" if self.safe_mode else "",
            )

    async def _relay(self, stream: asyncio.StreamReader) -> None:
        """The worker's log lines, re-logged here under the model's name."""
        level = logging.INFO
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the reader's limit: pass it on in pieces
                raw = await stream.read(1 << 16)
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\n")
            parts = line.split(LOG_SEPARATOR, 2)
            if len(parts) == 3 and parts[0] in _LEVELS:
                level, message = _LEVELS[parts[0]], parts[2]
            else:  # a traceback's next line, or C code printing on its own
                message = line
            if level >= logging.WARNING:
                self._tail.append(message)
            log.log(level, "[%s] %s", self.spec.name, message)

    def _write_config(self) -> None:
        """The worker's one-model spec: this model, logging as the gateway logs, no ledger."""
        root = logging.getLogger()
        engine = logging.getLogger("cloudlet.llama_cpp")
        spec = Spec(
            server=ServerSpec(
                log_level=_level_name(root.getEffectiveLevel()),
                engine_log_level=_level_name(engine.getEffectiveLevel()),
            ),
            models=[self.spec],
            storage=StorageSpec(ledger="off"),
        )
        self._config.write_text(spec.model_dump_json(exclude_defaults=True))


def _level_name(level: int) -> Literal["debug", "info", "warning", "error"]:
    if level <= logging.DEBUG:
        return "debug"
    if level <= logging.INFO:
        return "info"
    return "warning" if level <= logging.WARNING else "error"
