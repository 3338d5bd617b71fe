"""Papercuts a newcomer met in the CLI, each fixed (#13)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes_upstream import FakeUpstream


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudlet", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream(words=("Hello", " there")).start()
    yield up
    up.stop()


def test_help_shows_no_type_on_flags() -> None:
    for command in (["--help"], ["serve", "--help"], ["keys", "list", "--help"]):
        out = cli(*command).stdout
        assert "--help" in out and "<bool>" not in out, out
    assert "<int>" in cli("serve", "--help").stdout  # options with values keep their type


def test_a_bad_environment_value_is_blamed_on_the_environment() -> None:
    result = cli("models", env={"CLOUDLET_SERVER__PORT": "abc"})
    assert result.returncode == 2
    assert "invalid spec in the CLOUDLET_* environment variables" in result.stderr
    assert "[from CLOUDLET_SERVER__PORT]" in result.stderr
    assert "built-in defaults" not in result.stderr


def test_a_typo_inside_price_lists_the_price_fields(tmp_path: Path) -> None:
    spec = tmp_path / "cloudlet.yaml"
    spec.write_text(
        "models:\n  - name: r\n    engine: openai\n    url: http://127.0.0.1:9/v1\n"
        "    price: {input_per_mtok: 1, outptu_per_mtok: 2}\n"
    )
    result = cli("models", "--config", str(spec))
    assert result.returncode == 2
    assert (
        "models[0].price.outptu_per_mtok: unknown field; expected one of: input_per_mtok, "
        "output_per_mtok, currency" in " ".join(result.stderr.split())
    )


def test_models_of_a_server_with_an_api_key(upstream: FakeUpstream) -> None:
    result = cli("models", "--url", upstream.url, "--api-key", "sk-test-123", "--json")
    assert result.returncode == 0, result.stderr
    assert '"upstream-model"' in result.stdout
    assert upstream.calls("/models")[-1].headers["authorization"] == "Bearer sk-test-123"


def test_chat_without_a_server_with_a_route(tmp_path: Path, upstream: FakeUpstream) -> None:
    spec = tmp_path / "cloudlet.yaml"
    spec.write_text(
        f"models:\n  - name: remote\n    engine: openai\n    url: {upstream.url}\n"
        "routes:\n  - name: assistant\n    targets: [remote]\n"
    )
    result = cli("chat", "Say hi", "-m", "assistant", "--config", str(spec))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello there"
    unknown = cli("chat", "Say hi", "-m", "nope", "--config", str(spec))
    assert unknown.returncode == 1 and "no chat model or route 'nope'" in unknown.stderr
