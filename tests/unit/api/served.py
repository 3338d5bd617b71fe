"""An app under a real uvicorn on a loopback port, on its own thread, with the serve command's
protocol options: what slow, odd and leaving clients meet is the protocol, not only the app."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI

from cloudlet.api.http_guard import uvicorn_options
from cloudlet.config.spec import ServerSpec
from tests.conftest import free_port


@dataclass
class Served:
    server: uvicorn.Server
    port: int
    loop: asyncio.AbstractEventLoop | None = None
    paths: list[str] = field(default_factory=list)  # of every request the app was handed

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serve(app: FastAPI, server: ServerSpec) -> Iterator[Served]:
    port = free_port()
    paths: list[str] = []

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            paths.append(scope["path"])
        await app(scope, receive, send)

    config = uvicorn.Config(
        counted,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=5,
        **uvicorn_options(server),
    )
    served = Served(uvicorn.Server(config), port, paths=paths)

    def run() -> None:
        loop = asyncio.new_event_loop()
        served.loop = loop
        loop.run_until_complete(served.server.serve())
        loop.close()

    thread = threading.Thread(target=run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield served
    finally:
        served.server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "uvicorn did not stop"
