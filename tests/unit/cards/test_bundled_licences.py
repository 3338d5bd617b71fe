"""The bundled models' cards say the licence the README's table says."""

import re
from pathlib import Path

from cloudlet.cards.bundled import match_bundled
from cloudlet.config.spec import Spec

README = Path(__file__).resolve().parents[3] / "README.md"


def test_each_bundled_model_has_a_card_with_the_readme_licence() -> None:
    table = dict(re.findall(r"^\| `([\w.-]+)` \|.*\| ([\w.-]+) \|$", README.read_text(), re.M))
    for model in Spec().models:
        bundled = match_bundled(source=model.source)
        assert bundled is not None, model.name
        licences = bundled.card.licenses or {}
        assert licences["distribution"].name == table[model.name], model.name
