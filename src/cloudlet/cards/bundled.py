"""Cards shipped with cloudlet for the models it ships (``data/cards/*.yml``).

A bundled card is found for a model when its artifact's sha256 or its spec ``source`` matches
the card's ``match`` block, so a copy of the bundled file under ``file://`` finds it too, or
when the spec names it (``card: {bundled: <id>}``). The files are read once, on first use.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloudlet.config.cards import CardSpec
from cloudlet.errors import SpecError

_DIR = "data/cards"


class BundledMatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: tuple[str, ...] = ()
    sha256: tuple[str, ...] = ()


class BundledCard(BaseModel):
    """A shipped card: an id, how to recognise its model, and the card itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    match: BundledMatch = Field(default_factory=BundledMatch)
    card: CardSpec


@cache
def bundled_cards() -> tuple[BundledCard, ...]:
    """All shipped cards, by file name; a broken one is a bug in cloudlet, reported as such."""
    folder = resources.files("cloudlet.cards").joinpath(_DIR)
    cards = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith((".yml", ".yaml")):
            continue
        try:
            cards.append(BundledCard.model_validate(yaml.safe_load(entry.read_text("utf-8"))))
        except (yaml.YAMLError, ValidationError) as exc:
            raise SpecError(f"bundled card {entry.name}", [("(file)", str(exc))]) from exc
    return tuple(cards)


def bundled_card(card_id: str) -> BundledCard:
    """The shipped card called ``card_id``; LookupError (listing the ids) when there is none."""
    for card in bundled_cards():
        if card.id == card_id:
            return card
    known = ", ".join(c.id for c in bundled_cards())
    raise LookupError(f"no bundled card {card_id!r}; bundled cards: {known}")


def match_bundled(*, sha256: str | None = None, source: str | None = None) -> BundledCard | None:
    """The first shipped card whose ``match`` names this artifact digest or spec source."""
    for card in bundled_cards():
        if (sha256 and sha256 in card.match.sha256) or (source and source in card.match.sources):
            return card
    return None
