from __future__ import annotations

from decimal import Decimal

import pytest

from cloudlet.config.storage import CostSpec
from cloudlet.pricing import (
    DEFAULT_REFERENCE,
    FALLBACK_PROMPT_TOKENS_PER_SECOND,
    FALLBACK_TOKENS_PER_SECOND,
    LocalPricer,
    Money,
    Price,
    local_price,
    to_nanos,
)


def test_cost_is_exact_decimal_per_million_tokens() -> None:
    price = Price(Decimal("0.20"), Decimal("0.60"), "USD")
    assert price.cost(1000, 500) == Money(Decimal("0.000500000"), "USD")
    assert price.cost(0, 0) == Money.zero("USD")


def test_worst_case_rounds_up_and_covers_every_real_cost() -> None:
    price = Price(Decimal("0.000000333"), Decimal("0.1234567"), "EUR")
    reserve = price.worst_case(7, 11)
    assert reserve.currency == "EUR"
    assert reserve.amount >= price.cost(7, 11).amount
    assert all(price.cost(7, used).amount <= reserve.amount for used in range(12))
    assert reserve.amount == reserve.amount.quantize(Decimal("1e-9"))


def test_money_refuses_to_mix_currencies_and_round_trips_nanos() -> None:
    with pytest.raises(ValueError, match="USD with EUR"):
        _ = Money(Decimal(1), "USD") + Money(Decimal(1), "EUR")
    assert Money.from_nanos(Money(Decimal("1.234567891"), "USD").nanos) == Money(
        Decimal("1.234567891"), "USD"
    )
    assert to_nanos(Decimal("0.0000000001")) == 0
    assert to_nanos(Decimal("0.0000000001"), up=True) == 1
    assert str(Money(Decimal("5.000000000"), "USD")) == "5 USD"


def test_a_busy_hour_of_local_tokens_costs_the_hardware_per_hour() -> None:
    price = local_price(Decimal("0.10"), 100.0)
    tokens_in_an_hour = 100 * 3600
    hour = price.cost(tokens_in_an_hour // 2, tokens_in_an_hour // 2).amount
    assert abs(hour - Decimal("0.10")) < Decimal("0.000001")
    assert price.input_per_mtok == price.output_per_mtok > 0
    with pytest.raises(ValueError):
        local_price(Decimal("0.10"), 0.0)


def test_local_pricer_keeps_the_last_measured_rate() -> None:
    pricer = LocalPricer(Decimal("0.36"), assumed_tokens_per_second=None)
    before = pricer.price(0.0)
    assert before == local_price(
        Decimal("0.36"),
        FALLBACK_TOKENS_PER_SECOND,
        prompt_tokens_per_second=FALLBACK_PROMPT_TOKENS_PER_SECOND,
    )
    measured = pricer.price(200.0)
    assert measured.output_per_mtok < before.output_per_mtok
    assert pricer.price(0.0) == measured  # an idle engine reports 0: keep what we knew
    assumed = LocalPricer(Decimal("0.36"), assumed_tokens_per_second=50.0).price(0.0)
    assert assumed.output_per_mtok == local_price(Decimal("0.36"), 50.0).output_per_mtok


def test_cost_spec_prices_and_references() -> None:
    spec = CostSpec.model_validate({"hardware_per_hour": "0.10"})
    assert spec.reference() == DEFAULT_REFERENCE
    custom = CostSpec.model_validate(
        {
            "hardware_per_hour": 2,
            "currency": "EUR",
            "cloud_equivalent": {"input_per_mtok": 1, "output_per_mtok": 3, "currency": "EUR"},
        }
    )
    assert custom.reference() == Price(Decimal(1), Decimal(3), "EUR")
    assert custom.pricer().price(10.0).currency == "EUR"
