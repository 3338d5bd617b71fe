"""Money and prices: what a request costs, local ones included.

Money is a :class:`~decimal.Decimal` with an explicit currency, never a float: a ledger that
sums a million rows must agree with itself to the cent. Amounts are kept to nine decimal
places ("nanos"), which is what the ledger and the counters store as integers; prices per
million tokens with nine decimals resolve a single token of the cheapest hosted model.

Three kinds of price meet here:

* a cloud target's **list price** (``price: {input_per_mtok, output_per_mtok}`` in the spec);
* a local model's **hardware price**: ``cost: {hardware_per_hour}`` divided by the engine's
  measured rates, prompt tokens by its prefill rate and generated ones by its decode rate,
  each at the engine's capacity (:class:`Capacity`). A busy hour then costs exactly
  ``hardware_per_hour``; idle time is not charged to anyone (it is the operator's, not a
  tenant's), and the same request costs the same at idle and under load;
* the **cloud-equivalent**: what the same tokens would have cost at a reference cloud price,
  so that a report can say what running locally saved. The default reference,
  :data:`DEFAULT_REFERENCE`, is an assumption, not a quote: 8B-class open models on hosted
  serverless APIs were listed at roughly USD 0.10-0.20 per million tokens in 2024-2025 (for
  example Llama 3.1 8B Instruct Turbo at 0.18/0.18 on Together AI). Set
  ``cost.cloud_equivalent`` per model to compare against what you would really buy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation

NANO = Decimal("0.000000001")
_MILLION = Decimal(1_000_000)
_SECONDS_PER_HOUR = Decimal(3600)

#: A local model's decode rate (generated tokens per busy second, all sequences together)
#: until its engine has measured its own: a modest CPU figure, so the first reservations err
#: on the expensive (safe) side rather than on zero.
FALLBACK_TOKENS_PER_SECOND = 20.0
#: The same for prefill (prompt tokens evaluated per busy second): prompts are evaluated in
#: batches, about ten times faster than tokens are generated on a CPU.
FALLBACK_PROMPT_TOKENS_PER_SECOND = 200.0
#: How fast a measured capacity is forgotten when the engine no longer reaches it.
CAPACITY_HALF_LIFE_S = 3600.0


#: The largest budget a key may have, per period: the counters keep money as integer nanos in
#: Redis, whose Lua numbers are exact only up to 2^53 nanos (about 9 million).
MAX_AMOUNT = Decimal(1_000_000)


def parse_amount(text: str) -> Decimal:
    """A money amount typed by a person (``"20.00"``): finite, at least 0, at most
    :data:`MAX_AMOUNT`, at most nine decimal places. :class:`ValueError` says what is wrong."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError(f"expected an amount such as 20.00, got {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"expected a finite amount, got {text!r}")
    if value < 0:
        raise ValueError(f"expected an amount of at least 0, got {text!r}")
    if value > MAX_AMOUNT:
        raise ValueError(f"expected an amount of at most {MAX_AMOUNT}, got {text!r}")
    if value != value.quantize(NANO, rounding=ROUND_HALF_EVEN):
        raise ValueError(f"expected at most nine decimal places, got {text!r}")
    return value


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


def per_mtok(hardware_per_hour: Decimal, tokens_per_second: float) -> Decimal:
    """The price of a million tokens on hardware that costs ``hardware_per_hour`` and
    processes ``tokens_per_second`` of them, rounded up at nine decimals."""
    if not tokens_per_second > 0:
        raise ValueError("tokens_per_second must be positive")
    rate = Decimal(repr(tokens_per_second))
    return (hardware_per_hour * _MILLION / (rate * _SECONDS_PER_HOUR)).quantize(
        NANO, rounding=ROUND_CEILING
    )


def local_price(
    hardware_per_hour: Decimal,
    tokens_per_second: float,
    currency: str = "USD",
    *,
    prompt_tokens_per_second: float | None = None,
) -> Price:
    """The price of tokens on hardware that costs ``hardware_per_hour``: prompt tokens at
    ``prompt_tokens_per_second`` (prefill), generated ones at ``tokens_per_second`` (decode).

    Each rate is per busy second of the engine, all requests together, so an hour spent
    prefilling or decoding sums to ``hardware_per_hour``. Without a prefill rate, prompt
    tokens cost what generated ones do.
    """
    output = per_mtok(hardware_per_hour, tokens_per_second)
    prompt = prompt_tokens_per_second
    return Price(per_mtok(hardware_per_hour, prompt) if prompt else output, output, currency)


class Capacity:
    """A rate the engine has shown it sustains: the highest smoothed rate it measured, let go
    with a half-life of ``half_life_s`` while it measures less. Before any measurement it is
    ``default``.

    A batching engine's aggregate rate grows with its load (eight sequences decode several
    times faster together than one alone). Pricing at the instant's rate would charge a
    lone request at night for the whole idle machine and a busy hour's request for a slice:
    the same request would cost several times more at idle. Pricing at capacity charges what
    a token costs when the machine is used; idle time is the operator's, not a tenant's.
    """

    def __init__(
        self, default: float, *, half_life_s: float = CAPACITY_HALF_LIFE_S, now: float = 0.0
    ) -> None:
        self.value = default
        self.measured = False
        self._half_life = half_life_s
        self._at = now

    def observe(self, rate: float, now: float) -> float:
        """Take a smoothed measurement (0: none yet) made at ``now``; the capacity after it."""
        if rate > 0:
            if not self.measured:
                self.value, self.measured = rate, True
            else:
                held = self.value * 0.5 ** (max(0.0, now - self._at) / self._half_life)
                self.value = max(rate, held)
            self._at = now
        return self.value


class LocalPricer:
    """A local model's current price, from the rates its engine measured.

    Prompt tokens are priced by the engine's prefill rate, generated tokens by its decode rate,
    each at its :class:`Capacity` (smoothed by the engine, held here). Until the engine has
    measured, the configured ``assumed_*`` rates, else :data:`FALLBACK_TOKENS_PER_SECOND`
    and :data:`FALLBACK_PROMPT_TOKENS_PER_SECOND`. Price a request once, at admission, and use
    that :class:`Price` both to reserve and to settle, so that a rate change mid-request
    cannot push the real cost over the reservation.
    """

    def __init__(
        self,
        hardware_per_hour: Decimal,
        currency: str = "USD",
        *,
        assumed_tokens_per_second: float | None = None,
        assumed_prompt_tokens_per_second: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        half_life_s: float = CAPACITY_HALF_LIFE_S,
    ) -> None:
        self.hardware_per_hour = hardware_per_hour
        self.currency = currency
        self._clock = clock
        now = clock()
        decode = assumed_tokens_per_second or FALLBACK_TOKENS_PER_SECOND
        prefill = assumed_prompt_tokens_per_second or FALLBACK_PROMPT_TOKENS_PER_SECOND
        self.decode = Capacity(decode, half_life_s=half_life_s, now=now)
        self.prefill = Capacity(prefill, half_life_s=half_life_s, now=now)
        self._priced: tuple[float, float, Price] | None = None  # asked per request

    def price(self, tokens_per_second: float, prompt_tokens_per_second: float = 0.0) -> Price:
        """The price now, given the engine's smoothed decode and prefill rates (0: unknown)."""
        now = self._clock()
        decode = self.decode.observe(tokens_per_second, now)
        prefill = self.prefill.observe(prompt_tokens_per_second, now)
        priced = self._priced
        # Re-priced only when a rate moved by more than 1 %: one Decimal division per change.
        if priced is None or not (_near(priced[0], decode) and _near(priced[1], prefill)):
            price = local_price(
                self.hardware_per_hour,
                decode,
                self.currency,
                prompt_tokens_per_second=prefill,
            )
            priced = self._priced = (decode, prefill, price)
        return priced[2]


def _near(a: float, b: float) -> bool:
    return abs(a - b) <= 0.01 * max(a, b)
