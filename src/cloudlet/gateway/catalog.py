"""The transparency cards of the served models, and the openness policy over them.

Built once at start-up (reading a GGUF's metadata and hashing it takes a moment), checked at
start-up (a ``refuse`` violation stops the server) and per request (403 ``model_not_permitted``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from cloudlet.cards import ModelCard, Violation, build_card, card_summary, enforce
from cloudlet.config import Spec
from cloudlet.config.cards import OpennessPolicy
from cloudlet.engines.sources import resolve_source
from cloudlet.errors import CloudletError

log = logging.getLogger(__name__)


class Catalog:
    """Cards by served model name, plus the policy that judges them."""

    def __init__(self, cards: Mapping[str, ModelCard], policy: OpennessPolicy | None) -> None:
        self._cards = dict(cards)
        self.policy = policy

    @classmethod
    def from_spec(cls, spec: Spec) -> Catalog:
        cards = {}
        for model in spec.models:
            path = None
            if model.source:
                try:
                    path = resolve_source(model.source)
                except CloudletError:
                    path = None  # serving will report the missing file; the card is thinner
            cards[model.name] = build_card(model.name, path, model.card, source=model.source)
        return cls(cards, spec.policy.openness)

    @classmethod
    def empty(cls) -> Catalog:
        return cls({}, None)

    def card(self, model: str) -> ModelCard | None:
        return self._cards.get(model)

    def summary(self, model: str) -> dict[str, object] | None:
        card = self._cards.get(model)
        return card_summary(card) if card is not None else None

    def check_all(self) -> list[Violation]:
        """Start-up check: raises ModelNotPermitted on a refused model; returns the warnings."""
        warnings: list[Violation] = []
        for card in self._cards.values():
            warnings.extend(enforce(card, self.policy))
        return warnings

    def check(self, model: str) -> None:
        """Per request: raises ModelNotPermitted (403) when the policy refuses ``model``."""
        card = self._cards.get(model)
        if card is not None and self.policy is not None:
            enforce(card, self.policy)  # warnings were logged once, at start-up
