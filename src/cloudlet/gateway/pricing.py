"""Money and what a request costs on a priced target. Decimal only: no float ever holds money."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from cloudlet.config.remote import PriceSpec
from cloudlet.domain import GenerationRequest, Usage
from cloudlet.engines.openai_wire import estimate_prompt_tokens, estimate_tokens

_PER_MTOK = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount.normalize():f} {self.currency}"


def cost(price: PriceSpec, usage: Usage) -> Money:
    amount = (
        price.input_per_mtok * usage.prompt_tokens + price.output_per_mtok * usage.completion_tokens
    ) / _PER_MTOK
    return Money(amount, price.currency)


def worst_case(price: PriceSpec, request: GenerationRequest, max_tokens_default: int) -> Money:
    """What to reserve before the call: the estimated prompt plus every token it may generate."""
    completion = request.max_tokens or max_tokens_default
    return cost(price, Usage(estimate_prompt_tokens(request), completion))


def embedding_cost(price: PriceSpec, texts: list[str] | tuple[str, ...]) -> Money:
    return cost(price, Usage(sum(estimate_tokens(t) for t in texts), 0))
