"""Money and prices: what a request costs, local ones included.

Money is a :class:`~decimal.Decimal` with an explicit currency, never a float: a ledger that
sums a million rows must agree with itself to the cent. Amounts are kept to nine decimal
places ("nanos"), which is what the ledger and the counters store as integers; prices per
million tokens with nine decimals resolve a single token of the cheapest hosted model.

Three kinds of price meet here:

* a cloud target's **list price** (``price: {input_per_mtok, output_per_mtok}`` in the spec);
* a local model's **hardware price**: ``cost: {hardware_per_hour}`` divided by the engine's
  measured throughput. A busy hour then costs exactly ``hardware_per_hour``; idle time is not
  charged to anyone (it is the operator's, not a tenant's);
* the **cloud-equivalent**: what the same tokens would have cost at a reference cloud price,
  so that a report can say what running locally saved. The default reference,
  :data:`DEFAULT_REFERENCE`, is an assumption, not a quote: 8B-class open models on hosted
  serverless APIs were listed at roughly USD 0.10-0.20 per million tokens in 2024-2025 (for
  example Llama 3.1 8B Instruct Turbo at 0.18/0.18 on Together AI). Set
  ``cost.cloud_equivalent`` per model to compare against what you would really buy.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

NANO = Decimal("0.000000001")
_MILLION = Decimal(1_000_000)
_SECONDS_PER_HOUR = Decimal(3600)

#: Used by a local model until its engine has measured its own rate: a modest CPU figure, so
#: the first reservations err on the expensive (safe) side rather than on zero.
FALLBACK_TOKENS_PER_SECOND = 20.0


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in one currency (ISO 4217), kept to nine decimal places."""

    amount: Decimal
    currency: str = "USD"

    @classmethod
    def zero(cls, currency: str = "USD") -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def from_nanos(cls, nanos: int, currency: str = "USD") -> Money:
        return cls(Decimal(nanos).scaleb(-9), currency)

    @property
    def nanos(self) -> int:
        """The amount as an integer count of 1e-9 units, rounded half to even."""
        return to_nanos(self.amount)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")

    def __str__(self) -> str:
        return f"{self.amount.normalize():f} {self.currency}"


def to_nanos(amount: Decimal, *, up: bool = False) -> int:
    """``amount`` in 1e-9 units; ``up`` rounds toward +infinity (for reservations)."""
    rounding = ROUND_CEILING if up else ROUND_HALF_EVEN
    return int(amount.quantize(NANO, rounding=rounding).scaleb(9))


@dataclass(frozen=True, slots=True)
class Price:
    """What tokens cost, per million, in ``currency``."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    currency: str = "USD"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Money:
        """The exact cost of a request, rounded half to even at nine decimals."""
        raw = self._raw(prompt_tokens, completion_tokens)
        return Money(raw.quantize(NANO, rounding=ROUND_HALF_EVEN), self.currency)

    def worst_case(self, prompt_tokens: int, max_tokens: int) -> Money:
        """What to reserve before calling a target: the prompt plus every token it may generate,
        rounded up, so that the real cost (at this same price) never exceeds the reservation."""
        raw = self._raw(prompt_tokens, max_tokens)
        return Money(raw.quantize(NANO, rounding=ROUND_CEILING), self.currency)

    def _raw(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        if prompt_tokens < 0 or completion_tokens < 0:
            raise ValueError("token counts cannot be negative")
        total = self.input_per_mtok * prompt_tokens + self.output_per_mtok * completion_tokens
        return total / _MILLION


#: See the module docstring: an assumption for an 8B-class hosted open model, in USD.
DEFAULT_REFERENCE = Price(Decimal("0.18"), Decimal("0.18"), "USD")


def local_price(
    hardware_per_hour: Decimal, tokens_per_second: float, currency: str = "USD"
) -> Price:
    """The price of a token on hardware that costs ``hardware_per_hour`` and processes
    ``tokens_per_second`` (the engine's measured rate per busy second, all requests together).

    Input and output tokens get the same price: the engine's rate counts every token it
    evaluates, so a busy hour then sums to ``hardware_per_hour``.
    """
    if tokens_per_second <= 0:
        raise ValueError("tokens_per_second must be positive")
    rate = Decimal(repr(tokens_per_second))
    per_mtok = (hardware_per_hour * _MILLION / (rate * _SECONDS_PER_HOUR)).quantize(
        NANO, rounding=ROUND_CEILING
    )
    return Price(per_mtok, per_mtok, currency)


class LocalPricer:
    """A local model's current price, from the engine's measured rate.

    The engine reports 0 until it has served something; the pricer then keeps the last rate it
    saw, or the configured ``assumed_tokens_per_second``, or :data:`FALLBACK_TOKENS_PER_SECOND`.
    Price a request once, at admission, and use that :class:`Price` both to reserve and to
    settle, so that a rate change mid-request cannot push the real cost over the reservation.
    """

    def __init__(
        self,
        hardware_per_hour: Decimal,
        currency: str = "USD",
        *,
        assumed_tokens_per_second: float | None = None,
    ) -> None:
        self.hardware_per_hour = hardware_per_hour
        self.currency = currency
        self._rate = assumed_tokens_per_second or FALLBACK_TOKENS_PER_SECOND
        self._priced: tuple[float, Price] | None = None  # (rate, its price): asked per request

    def price(self, measured_tokens_per_second: float) -> Price:
        if measured_tokens_per_second > 0:
            self._rate = measured_tokens_per_second
        priced = self._priced
        if priced is None or priced[0] != self._rate:
            priced = self._priced = (
                self._rate,
                local_price(self.hardware_per_hour, self._rate, self.currency),
            )
        return priced[1]
