"""The openness policy: which models may be served, judged from their cards.

:func:`check_policy` is pure and only reports; the caller decides what a violation does, from
``policy.on_violation``: at start-up ``refuse`` stops the server (naming model and rule) and
``warn`` logs; per request a refused model answers 403 ``model_not_permitted``
(:class:`ModelNotPermitted`).

Rules:

* ``min_mof_class: N`` — the card's MOF class must be N or more open (a smaller number):
  ``3`` admits Class III, II and I; an unclassified model never passes.
* ``licenses.allow`` / ``licenses.deny`` — judged on the licence of the weights served (the
  resolved licence of "Model parameters (Final)", else the distribution licence). An SPDX
  expression passes when some choice among its ``OR`` terms uses only allowed, not denied,
  licences; with a non-empty ``allow``, an unknown licence fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from license_expression import (
    AND,
    OR,
    ExpressionError,
    LicenseSymbol,
    LicenseWithExceptionSymbol,
)

from cloudlet.cards.classify import LABELS
from cloudlet.cards.licenses import license_terms, spdx_id, spdx_licensing
from cloudlet.cards.model import ModelCard
from cloudlet.config.cards import OpennessPolicy
from cloudlet.errors import ModelNotPermitted

Rule = Literal["min_mof_class", "licenses.allow", "licenses.deny"]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule. ``message`` names the model and the rule; ``action`` is what the policy
    asks for (``refuse`` or ``warn``)."""

    model: str
    rule: Rule
    message: str
    action: Literal["refuse", "warn"]

    @property
    def refuses(self) -> bool:
        return self.action == "refuse"


def check_policy(card: ModelCard, policy: OpennessPolicy | None) -> list[Violation]:
    """Every rule of ``policy`` that ``card`` breaks, in rule order; [] when it passes."""
    if policy is None:
        return []
    found: list[tuple[Rule, str]] = []
    if policy.min_mof_class is not None:
        got = card.mof.class_
        if got is None or got > policy.min_mof_class:
            progress = card.mof.progress[policy.min_mof_class]
            found.append(
                (
                    "min_mof_class",
                    f"is {LABELS[got]} under the Model Openness Framework, the policy needs "
                    f"{LABELS[policy.min_mof_class]} or more open "
                    f"(Class {_roman(policy.min_mof_class)} at {progress} %)",
                )
            )
    rules = policy.licenses.model_copy(
        update={
            "allow": [spdx_id(v) or v for v in policy.licenses.allow],
            "deny": [spdx_id(v) or v for v in policy.licenses.deny],
        }
    )
    if rules.allow or rules.deny:
        license_ = card.weights_license
        denied = [t for t in license_terms(license_ or "") if t in rules.deny]
        if license_ is None:
            if rules.allow:
                found.append(("licenses.allow", "has no known licence; the policy allows only "
                              + ", ".join(rules.allow)))  # fmt: skip
        elif not _satisfiable(license_, set(rules.allow), set(rules.deny)):
            if denied:
                found.append(("licenses.deny", f"is licensed {license_}, which the policy "
                              f"denies ({', '.join(denied)})"))  # fmt: skip
            else:
                found.append(("licenses.allow", f"is licensed {license_}, not one the policy "
                              f"allows ({', '.join(rules.allow)})"))  # fmt: skip
    return [
        Violation(
            model=card.name,
            rule=rule,
            message=f"model {card.name!r} breaks policy.openness.{rule}: it {detail}",
            action=policy.on_violation,
        )
        for rule, detail in found
    ]


def enforce(card: ModelCard, policy: OpennessPolicy | None) -> list[Violation]:
    """Raise :class:`ModelNotPermitted` for the first violation that refuses; else return the
    violations that only warn (for the caller to log). One call for start-up and per request."""
    violations = check_policy(card, policy)
    for violation in violations:
        if violation.refuses:
            raise ModelNotPermitted(violation.message, rule=violation.rule)
    return violations


def _satisfiable(expression: str, allow: set[str], deny: set[str]) -> bool:
    def ok(symbol: str) -> bool:
        return symbol not in deny and (not allow or symbol in allow)

    try:
        parsed = spdx_licensing().parse(expression, validate=False, simple=False)
    except ExpressionError:
        return ok(expression)
    return _evaluate(parsed, ok)


def _evaluate(node: object, ok: Callable[[str], bool]) -> bool:
    """AND needs every term, OR one; ``A WITH exception`` is judged by ``A``."""
    if isinstance(node, AND):
        return all(_evaluate(arg, ok) for arg in node.args)
    if isinstance(node, OR):
        return any(_evaluate(arg, ok) for arg in node.args)
    if isinstance(node, LicenseWithExceptionSymbol):
        return ok(str(node.license_symbol.key))
    if isinstance(node, LicenseSymbol):
        return ok(str(node.key))
    return False


def _roman(n: int) -> str:
    return {1: "I", 2: "II", 3: "III"}[n]
