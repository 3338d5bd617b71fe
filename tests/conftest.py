"""Shared fixtures: a real `cloudlet serve` subprocess on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """../shared beside the checkout (CI lays it there), or $CLOUDLET_SHARED_DIR."""
    return Path(os.environ.get("CLOUDLET_SHARED_DIR", REPO.parent / "shared"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    tmp: Path,
    config: str | None = None,
    env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "cloudlet", "serve", "--port", str(port), *extra_args]
    if config is not None:
        path = tmp / "cloudlet.yaml"
        path.write_text(config)
        args += ["--config", str(path)]
    log = tmp / "server.log"
    process = subprocess.Popen(
        args,
        cwd=tmp,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        # Each server gets its own data directory, so its ledger and keys are its own; tracing
        # is on only where a test asks for it (not from the shell's OTEL_*).
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            "COLUMNS": "200",
            "XDG_DATA_HOME": str(tmp / "data"),
            **(env or {}),
        },
    )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cloudlet serve exited {process.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.base_url + "/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"cloudlet serve did not become ready:\n{server.output()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default `cloudlet serve` (bundled SmolLM2 + MiniLM), shared by the contract tests."""
    srv = start_server(tmp_path_factory.mktemp("serve"))
    yield srv
    stop_server(srv)
