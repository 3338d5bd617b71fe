import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloudlet import __version__
from cloudlet.cli.main import app

runner = CliRunner()


def test_version_and_help() -> None:
    assert runner.invoke(app, ["--version"]).output.strip() == f"cloudlet {__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "chat", "models"):
        assert command in result.output
    assert "--port" in runner.invoke(app, ["serve", "--help"]).output


def test_models_lists_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [(r["id"], r["kind"]) for r in rows] == [
        ("smollm2", "chat"),
        ("all-minilm-l6-v2", "embedding"),
    ]


def test_bad_spec_exits_2_with_the_field(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("server:\n  port: high\n")
    result = runner.invoke(app, ["models", "--config", str(spec)])
    assert result.exit_code == 2
    assert "invalid spec in" in result.output
    assert "server.port" in result.output
    assert "Traceback" not in result.output


def test_chat_with_unknown_model_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["chat", "hi", "--model", "nope"])
    assert result.exit_code == 1
    assert "no chat model or route 'nope'" in result.output


def test_chat_against_an_unreachable_url_fails_clearly() -> None:
    result = runner.invoke(app, ["chat", "hi", "--url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 1
    assert "cannot reach" in result.output
