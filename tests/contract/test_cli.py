"""The CLI against the real model: on its own (the model in a supervised worker) and through a
running server."""

import os
import subprocess
import sys

import pytest

from cloudlet.engines.llamacpp_safe import CRASH_ON_FIRST_DECODE, FAULT_ENV
from tests.conftest import Server

pytestmark = pytest.mark.slow


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudlet", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def test_chat_without_a_server_streams_an_answer() -> None:
    result = run_cli("chat", "Say hello.", "--max-tokens", "8", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "llama_model_loader" not in result.stdout + result.stderr


def test_chat_survives_a_kernel_fault_on_the_first_decode() -> None:
    """The model's worker dies from SIGSEGV as llama.cpp's AMX kernels kill a process on some
    Xeons (forced here, on any CPU): chat restarts it in safe mode, says so, and answers."""
    env = {**os.environ, FAULT_ENV: CRASH_ON_FIRST_DECODE}
    result = run_cli("chat", "Say hello.", "--max-tokens", "8", "--seed", "1", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "restarting it in safe mode" in " ".join(result.stderr.split())


def test_chat_through_a_server(server: Server) -> None:
    result = run_cli("chat", "Say hello.", "--url", server.v1, "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_models_of_a_server(server: Server) -> None:
    result = run_cli("models", "--url", server.v1, "--json")
    assert result.returncode == 0, result.stderr
    assert '"smollm2"' in result.stdout


def test_server_output_has_banner_and_no_llama_cpp_noise(server: Server) -> None:
    out = server.output()
    assert f"listening on {server.v1}" in out
    assert "tracing: off" in out  # no OTEL_* exporter configured
    assert "smollm2" in out and "all-minilm-l6-v2" in out
    for noise in ("llama_model_loader", "load_tensors", "llama_context", "system_info"):
        assert noise not in out
