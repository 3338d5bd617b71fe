"""Local prices mean something: prefill and decode priced from their own smoothed rates, at the
engine's capacity, so the same request costs the same at idle and under load; the default
before any measurement is documented; the cloud-equivalent is computed on the same tokens.

Deterministic: the engine's decode steps are fed to the same :class:`RateMeter` the scheduler
uses, with fake step times, and its rates go through :class:`Prices` as EngineStats.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest
import yaml

from cloudlet.config import Spec
from cloudlet.domain import EngineStats
from cloudlet.engines.rates import RateMeter
from cloudlet.gateway.prices import STATS_TTL_S, Prices
from cloudlet.pricing import (
    FALLBACK_PROMPT_TOKENS_PER_SECOND,
    FALLBACK_TOKENS_PER_SECOND,
    Capacity,
    LocalPricer,
    Price,
)

HW = Decimal("0.10")  # dollars per hour


def test_prefill_and_decode_rates_are_measured_apart() -> None:
    meter = RateMeter()
    meter.step(prompt_tokens=512, decode_tokens=0, seconds=0.5)  # 1024 prompt tokens/s
    meter.step(prompt_tokens=0, decode_tokens=4, seconds=0.1)  # 40 generated tokens/s
    assert meter.prompt_tokens_per_second == pytest.approx(1024)
    assert meter.completion_tokens_per_second == pytest.approx(40)
    # A mixed step splits its time by tokens: each row of one forward pass costs the same.
    meter = RateMeter()
    meter.step(prompt_tokens=96, decode_tokens=4, seconds=0.1)
    assert meter.prompt_tokens_per_second == pytest.approx(1000)
    assert meter.completion_tokens_per_second == pytest.approx(1000)
    assert RateMeter().prompt_tokens_per_second == 0.0  # nothing measured yet


def test_rates_are_smoothed_not_the_instants() -> None:
    meter = RateMeter()
    for _ in range(300):  # a minute of steady decoding at 100 tokens/s
        meter.step(0, 20, 0.2)
    meter.step(0, 1, 2.0)  # one pathological step: 0.5 tokens/s
    assert meter.completion_tokens_per_second == pytest.approx(100, rel=0.1)


def test_prompt_and_generated_tokens_get_their_own_price() -> None:
    pricer = LocalPricer(HW)
    price = pricer.price(50.0, 1000.0)
    # $0.10/h over 1000 prompt tokens/s; over 50 generated tokens/s
    assert price.input_per_mtok == pytest.approx(
        Decimal("0.1") * 10**6 / (1000 * 3600), rel=Decimal("1e-6")
    )
    assert price.output_per_mtok == pytest.approx(
        Decimal("0.1") * 10**6 / (50 * 3600), rel=Decimal("1e-6")
    )
    # a busy hour of each costs the hardware's hour
    assert price.cost(1000 * 3600, 0).amount == pytest.approx(HW, rel=Decimal("1e-6"))
    assert price.cost(0, 50 * 3600).amount == pytest.approx(HW, rel=Decimal("1e-6"))


def test_the_documented_default_applies_before_any_measurement() -> None:
    price = LocalPricer(HW).price(0.0, 0.0)
    assert price == LocalPricer(HW).price(FALLBACK_TOKENS_PER_SECOND, 0.0)
    assert (FALLBACK_TOKENS_PER_SECOND, FALLBACK_PROMPT_TOKENS_PER_SECOND) == (20.0, 200.0)
    configured = LocalPricer(
        HW, assumed_tokens_per_second=80.0, assumed_prompt_tokens_per_second=800.0
    ).price(0.0, 0.0)
    assert configured.output_per_mtok < price.output_per_mtok


def test_capacity_holds_then_lets_go_with_its_half_life() -> None:
    cap = Capacity(20.0, half_life_s=3600.0)
    assert cap.observe(0.0, 0.0) == 20.0  # the default until measured
    assert cap.observe(90.0, 1.0) == 90.0  # the first measurement replaces it
    assert cap.observe(250.0, 2.0) == 250.0
    assert cap.observe(90.0, 3.0) == pytest.approx(250.0, rel=1e-3)  # idle: held
    assert cap.observe(90.0, 3603.0) == pytest.approx(125.0, rel=1e-3)  # an hour: half
    assert cap.observe(90.0, 4 * 3600.0) == 90.0  # never below what is measured


class Engine:
    """A batching engine on a small CPU: one sequence decodes 90 tokens/s, eight together 240;
    prompts prefill at 1200 tokens/s. Its steps go through the scheduler's RateMeter."""

    def __init__(self) -> None:
        self.meter = RateMeter()

    def run(self, running: int, seconds: float) -> None:
        per_step = {1: 1 / 90, 8: 8 / 240}[running]
        for _ in range(int(seconds / per_step)):
            self.meter.step(0, running, per_step)

    def prefill(self, tokens: int) -> None:
        self.meter.step(tokens, 0, tokens / 1200)

    def stats(self) -> Mapping[str, EngineStats]:
        return {
            "local": EngineStats(
                prompt_tokens_per_second=self.meter.prompt_tokens_per_second,
                completion_tokens_per_second=self.meter.completion_tokens_per_second,
            )
        }


def test_the_same_request_costs_the_same_at_idle_and_under_load() -> None:
    spec = Spec.model_validate(
        yaml.safe_load(
            "models:\n  - name: local\n    source: package://p/m.gguf\n"
            "    cost: {hardware_per_hour: 0.10}\n"
        )
    )
    engine = Engine()
    now = [0.0]
    prices = Prices(spec.models, engine.stats, clock=lambda: now[0])

    def price_now() -> Price:
        now[0] += STATS_TTL_S
        return prices.of("local")[0]

    def cost() -> Decimal:  # the request: 31 prompt tokens, 2 generated
        return price_now().cost(31, 2).amount

    engine.prefill(2000)
    engine.run(running=8, seconds=60)  # a busy minute
    under_load = cost()
    engine.prefill(31)  # the request alone at night, and a prompt-only instant
    engine.run(running=1, seconds=2)
    at_idle = cost()
    engine.run(running=8, seconds=30)
    again_under_load = cost()
    for other in (at_idle, again_under_load):
        assert abs(other - under_load) <= under_load / 10, (under_load, other)
    # and prompt tokens are much cheaper than generated ones on this engine
    price = price_now()
    assert price.input_per_mtok * 4 < price.output_per_mtok  # 1200 vs 240 tokens/s


def test_the_cloud_equivalent_prices_the_same_tokens() -> None:
    spec = Spec.model_validate(
        yaml.safe_load(
            "models:\n  - name: local\n    source: package://p/m.gguf\n"
            "    cost:\n      hardware_per_hour: 0.10\n"
            "      cloud_equivalent: {input_per_mtok: 0.5, output_per_mtok: 1.5}\n"
        )
    )
    price, reference = Prices(spec.models, dict).of("local")
    assert reference == Price(Decimal("0.5"), Decimal("1.5"))
    assert reference.cost(10**6, 10**6).amount == Decimal(2)
    assert price.currency == reference.currency == "USD"
