"""The spec blocks: ``card:`` per model and ``policy:`` at the top."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cloudlet.cards import CardSpec, OpennessPolicy, PolicySpec, build_card, check_policy


def test_card_spec_accepts_the_documented_shape() -> None:
    spec = CardSpec.model_validate(
        {
            "mof_file": "cards/x.yml",
            "license": "apache-2.0",
            "licenses": {"data": "CC-BY-4.0", "code": {"name": "MIT", "path": "LICENSE"}},
            "components": [{"name": "Research paper", "license": "CC-BY-4.0"}],
        }
    )
    assert spec.licenses is not None
    assert spec.licenses["data"].name == "CC-BY-4.0"
    assert spec.licenses["code"].path == "LICENSE"
    assert spec.resolved(Path("/etc/cloudlet")).mof_file == Path("/etc/cloudlet/cards/x.yml")


@pytest.mark.parametrize(
    "bad",
    [
        {"components": [{"name": "Weights"}]},
        {"components": [{"name": "Model card"}, {"name": "Model card"}]},
        {"date": "13/06/2024"},
        {"architecture": "llama"},
        {"colour": "blue"},
    ],
)
def test_card_spec_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CardSpec.model_validate(bad)


def test_policy_defaults_and_licence_lists_normalised_when_applied() -> None:
    policy = PolicySpec.model_validate(
        {"openness": {"min_mof_class": 3, "licenses": {"allow": [" apache-2.0", "mit"]}}}
    )
    assert policy.openness is not None
    assert policy.openness.on_violation == "refuse"
    assert policy.openness.licenses.allow == ["apache-2.0", "mit"]  # kept as typed
    card = build_card("m", spec=CardSpec(licenses={"distribution": {"name": "Apache-2.0"}}))
    assert check_policy(card, policy.openness.model_copy(update={"min_mof_class": None})) == []
    assert policy.openness.licenses.deny == []
    assert PolicySpec().openness is None


@pytest.mark.parametrize(
    "bad", [{"min_mof_class": 4}, {"on_violation": "ignore"}, {"licenses": {"only": []}}]
)
def test_policy_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        OpennessPolicy.model_validate(bad)
