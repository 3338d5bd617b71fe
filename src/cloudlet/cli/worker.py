"""`cloudlet worker`: one local model behind the wire, for a gateway to talk to.

`cloudlet serve` starts one worker per local model and supervises it
(:mod:`cloudlet.engines.worker_process`); an engine pod in a cluster runs the same command.
The worker serves cloudlet's own OpenAI-compatible API for its one model, without keys,
limits or ledger (the gateway does those) and, on a network port, only to the holder of
``CLOUDLET_WORKER_TOKEN``. A crash in llama.cpp then ends this process only.

Its log lines go to stderr as ``LEVEL<TAB>logger<TAB>message`` for the supervising gateway
to re-log under the model's name; ``--log-format rich`` is for a person at a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from cloudlet.cli.common import EXIT_BAD_SPEC, ConfigOption, fail, setup_logging, spec_or_exit
from cloudlet.cli.server import DrainingServer
from cloudlet.config import ModelSpec, Spec
from cloudlet.config.storage import StorageSpec
from cloudlet.engines.worker_process import LOG_SEPARATOR, TOKEN_ENV

log = logging.getLogger("cloudlet.worker")
KEEP_ALIVE_S = 3600


def worker(
    config: ConfigOption = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Which model of the spec [default: its only one]"),
    ] = None,
    uds: Annotated[
        Path | None,
        typer.Option(help="Listen on this Unix socket instead of host:port", show_default=False),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind [default: the spec's server.host]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: the spec's server.port]")] = None,
    safe_mode: Annotated[
        bool | None,
        typer.Option(
            "--safe-mode/--no-safe-mode",
            help="llama.cpp's extra CPU buffer types off (on) or on (off) "
            "[default: the model's safe_mode; auto: on if they crash a child process that "
            "loads the model first]",
            show_default=False,
        ),
    ] = None,
    parent_pid: Annotated[
        int | None,
        typer.Option(help="Exit when this process is gone (set by cloudlet serve)", hidden=True),
    ] = None,
    log_format: Annotated[
        str, typer.Option(help="plain (for a supervising gateway) or rich")
    ] = "plain",
) -> None:
    """Serve one local model to a gateway (cloudlet serve starts these; so do engine pods)."""
    spec = spec_or_exit(config, {"server.host": host, "server.port": port})
    chosen = _pick(spec, model)
    if log_format == "rich":
        setup_logging(spec.server.log_level, spec.server.engine_log_level)
    else:
        _plain_logging(spec.server.log_level, spec.server.engine_log_level)
    token = os.environ.get(TOKEN_ENV) or None
    if token is None and uds is None and not spec.server.is_loopback:
        fail(
            f"an engine worker reachable from the network needs {TOKEN_ENV} (the token its "
            "gateway sends); refusing to serve the model to anyone who asks",
            EXIT_BAD_SPEC,
        )
    from cloudlet.api import create_app
    from cloudlet.api.http_guard import guarded_protocol
    from cloudlet.api.worker_auth import WorkerToken
    from cloudlet.engines.factory import build_engine
    from cloudlet.gateway.catalog import Catalog

    safe = _safe_mode(chosen) if safe_mode is None else safe_mode
    engine = build_engine(chosen, in_process=True, safe_mode=safe)
    # The gateway logs each request's access line; its worker would only repeat it.
    server_spec = spec.server.model_copy(update={"access_log": False})
    one = Spec(server=server_spec, models=[chosen], storage=StorageSpec(ledger="off"))
    companions = [lambda: _orphan_guard(parent_pid)] if parent_pid else []
    app = create_app(
        one, {chosen.name: engine}, catalog=Catalog.empty(), accounts=False, companions=companions
    )
    if token is not None:
        app.add_middleware(WorkerToken, token=token)
    server = DrainingServer(
        uvicorn.Config(
            app,
            host=spec.server.host,
            port=spec.server.port,
            uds=str(uds) if uds is not None else None,
            log_config=None,
            log_level="warning",  # uvicorn's own start-up lines: the supervisor says it all
            access_log=False,
            # The gateway is the only client and pools its connections: a worker closing an
            # idle one could race a request the gateway is sending on it.
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=5,
            http=guarded_protocol(spec.server),  # 408/431 for slow or odd clients (#13)
        ),
        app.state.drain,
        spec.server.drain_timeout_s,
    )
    where = f"unix:{uds}" if uds is not None else f"{spec.server.host}:{spec.server.port}"
    log.info(
        "worker for model %s on %s (pid %d, %s)",
        chosen.name,
        where,
        os.getpid(),
        "safe mode: llama.cpp's extra CPU buffer types off" if safe else "all CPU kernels",
    )
    server.run()
    if not server.started:
        raise typer.Exit(1)


def _safe_mode(model: ModelSpec) -> bool:
    """Safe mode for a worker run on its own (an engine pod): the spec's, and for ``auto`` what
    a child process that loads the model with all CPU kernels shows (a supervising gateway
    passes ``--safe-mode``/``--no-safe-mode`` and restarts a crashed worker itself)."""
    if model.safe_mode != "auto":
        return model.safe_mode == "on"
    from cloudlet.engines.llamacpp_probe import kernels_crash
    from cloudlet.errors import CloudletError

    try:
        crashes = kernels_crash(model)
    except CloudletError as exc:
        fail(exc.message)
    if crashes:
        log.warning(
            "model %s: llama.cpp's extra CPU buffer types crash on this CPU (tried in a child "
            "process); serving in safe mode: slower, but it works. Set safe_mode: on for this "
            "model to skip the check.",
            model.name,
        )
    return crashes


def _pick(spec: Spec, name: str | None) -> ModelSpec:
    local = [m for m in spec.models if m.engine == "llamacpp"]
    if name is not None:
        found = next((m for m in local if m.name == name), None)
        if found is None:
            fail(f"no local (engine: llamacpp) model named {name!r} in the spec", EXIT_BAD_SPEC)
        return found
    if len(local) != 1:
        fail(f"the spec has {len(local)} local models; say which one with --model", EXIT_BAD_SPEC)
    return local[0]


def _plain_logging(level: str, engine_level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(LOG_SEPARATOR.join(("%(levelname)s", "%(name)s", "%(message)s")))
    )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("cloudlet.llama_cpp").setLevel(engine_level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for noisy in ("uvicorn.error", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.asynccontextmanager
async def _orphan_guard(parent_pid: int | None) -> AsyncIterator[None]:
    """Exit at once when the supervising gateway is gone (killed with -9, say): nobody is left
    to talk to, and a worker must never outlive its gateway holding the model's memory."""

    async def watch() -> None:
        while os.getppid() == parent_pid:  # noqa: ASYNC110 - no event says a parent died
            await asyncio.sleep(1.0)
        log.warning("the gateway (pid %s) is gone; the worker exits", parent_pid)
        os._exit(0)

    task = asyncio.get_running_loop().create_task(watch(), name="orphan-guard")
    try:
        yield
    finally:
        task.cancel()
