"""What a request costs on a priced target, from the spec's ``price:`` (:mod:`cloudlet.pricing`).

Money is :class:`cloudlet.pricing.Money` everywhere (Decimal, explicit currency, nine places);
this module only turns a :class:`~cloudlet.config.remote.PriceSpec` and token counts into it.
"""

from __future__ import annotations

from cloudlet.config.remote import PriceSpec
from cloudlet.domain import GenerationRequest, Usage
from cloudlet.domain.tokens import prompt_token_bound, token_bound
from cloudlet.pricing import Money, Price

__all__ = ["Money", "cost", "embedding_bound", "embedding_cost", "price_of", "worst_case"]


def price_of(spec: PriceSpec) -> Price:
    return Price(spec.input_per_mtok, spec.output_per_mtok, spec.currency)


def cost(price: PriceSpec, usage: Usage) -> Money:
    return price_of(price).cost(usage.prompt_tokens, usage.completion_tokens)


def worst_case(price: PriceSpec, request: GenerationRequest, max_tokens_default: int) -> Money:
    """What to reserve before the call: an upper bound of the prompt's tokens (from its UTF-8
    length, see :func:`~cloudlet.domain.tokens.prompt_token_bound`) plus every token
    it may generate, in each of its ``n`` choices."""
    completion = request.completion_bound(max_tokens_default)
    return price_of(price).worst_case(prompt_token_bound(request), completion)


def embedding_bound(texts: list[str] | tuple[str, ...]) -> int:
    """An upper bound of the tokens ``texts`` can cost (a BOS and an EOS each, at most)."""
    return sum(token_bound(t) + 2 for t in texts)


def embedding_cost(price: PriceSpec, texts: list[str] | tuple[str, ...]) -> Money:
    """What to reserve for embedding ``texts``: their token bound, at ``price``."""
    return price_of(price).worst_case(embedding_bound(texts), 0)
