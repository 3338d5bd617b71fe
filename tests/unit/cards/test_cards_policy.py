"""Openness policy: pure evaluation; the caller refuses or warns."""

from __future__ import annotations

import pytest

from cloudlet.cards import (
    CardSpec,
    ModelCard,
    ModelNotPermitted,
    OpennessPolicy,
    build_card,
    check_policy,
    enforce,
)

CLASS_III = ("Model architecture", "Model parameters (Final)", "Model card", "Data card",
             "Technical report", "Evaluation results")  # fmt: skip


def _card(license_: str | None, *components: str, weights: str | None = None) -> ModelCard:
    parts: list[dict[str, str]] = [{"name": n} for n in components]
    if weights is not None:
        parts = [p for p in parts if p["name"] != "Model parameters (Final)"]
        parts.append({"name": "Model parameters (Final)", "license": weights})
    return build_card(
        "m", None, CardSpec.model_validate({"license": license_, "components": parts})
    )


def _policy(**fields: object) -> OpennessPolicy:
    return OpennessPolicy.model_validate(fields)


def test_no_policy_no_violations() -> None:
    assert check_policy(_card(None), None) == []
    assert check_policy(_card(None), _policy()) == []


@pytest.mark.parametrize("action", ["refuse", "warn"])
def test_min_class_violation_names_model_and_rule(action: str) -> None:
    card = _card("Apache-2.0", *CLASS_III[:-1])
    [violation] = check_policy(card, _policy(min_mof_class=3, on_violation=action))
    assert violation.model == "m"
    assert violation.rule == "min_mof_class"
    assert violation.action == action
    assert violation.refuses is (action == "refuse")
    assert violation.message == (
        "model 'm' breaks policy.openness.min_mof_class: it is Unclassified under the Model "
        "Openness Framework, the policy needs Class III - Open Model or more open "
        "(Class III at 83 %)"
    )


def test_min_class_is_a_floor_on_openness() -> None:
    class_three = _card("Apache-2.0", *CLASS_III)
    assert class_three.mof.class_ == 3
    assert check_policy(class_three, _policy(min_mof_class=3)) == []
    [violation] = check_policy(class_three, _policy(min_mof_class=2))
    assert "Class III - Open Model" in violation.message


def test_licence_allow_and_deny() -> None:
    card = _card("cc-by-nc-4.0")
    assert card.weights_license == "CC-BY-NC-4.0"
    [deny] = check_policy(card, _policy(licenses={"deny": ["cc-by-nc-4.0"]}))
    assert deny.rule == "licenses.deny"
    assert "CC-BY-NC-4.0" in deny.message
    [allow] = check_policy(card, _policy(licenses={"allow": ["Apache-2.0", "MIT"]}))
    assert allow.rule == "licenses.allow"
    assert check_policy(_card("MIT"), _policy(licenses={"allow": ["mit"]})) == []


def test_licence_rules_judge_the_weights() -> None:
    card = _card("Apache-2.0", "Model parameters (Final)", weights="CC-BY-NC-4.0")
    [violation] = check_policy(card, _policy(licenses={"deny": ["CC-BY-NC-4.0"]}))
    assert violation.rule == "licenses.deny"


def test_expressions_pass_when_some_choice_is_allowed() -> None:
    either = _card("CC-BY-NC-4.0 OR MIT")
    assert check_policy(either, _policy(licenses={"deny": ["CC-BY-NC-4.0"]})) == []
    both = _card("CC-BY-NC-4.0 AND MIT")
    assert [v.rule for v in check_policy(both, _policy(licenses={"deny": ["CC-BY-NC-4.0"]}))] == [
        "licenses.deny"
    ]


def test_unknown_licence_fails_an_allow_list_only() -> None:
    card = _card(None)
    [violation] = check_policy(card, _policy(licenses={"allow": ["MIT"]}))
    assert "no known licence" in violation.message
    assert check_policy(card, _policy(licenses={"deny": ["MIT"]})) == []


def test_every_broken_rule_is_reported() -> None:
    card = _card("CC-BY-NC-4.0")
    rules = [
        v.rule
        for v in check_policy(card, _policy(min_mof_class=1, licenses={"deny": ["CC-BY-NC-4.0"]}))
    ]
    assert rules == ["min_mof_class", "licenses.deny"]


def test_model_not_permitted_maps_to_403() -> None:
    [violation] = check_policy(_card(None), _policy(min_mof_class=3))
    error = ModelNotPermitted(violation.message, rule=violation.rule)
    assert (error.status, error.type, error.code, error.param) == (
        403,
        "permission_error",
        "model_not_permitted",
        "model",
    )
    assert error.message == violation.message
    assert error.rule == violation.rule


def test_enforce_raises_on_refuse_and_returns_warnings() -> None:
    card = _card(None)
    with pytest.raises(ModelNotPermitted) as info:
        enforce(card, _policy(min_mof_class=3))
    assert info.value.rule == "min_mof_class"
    warnings = enforce(card, _policy(min_mof_class=3, on_violation="warn"))
    assert [w.rule for w in warnings] == ["min_mof_class"]
    assert enforce(card, None) == []
