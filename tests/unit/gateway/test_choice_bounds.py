"""A request for ``n`` choices may generate ``max_tokens`` in each: every bound a budget
holds or caps a charge at counts all of them, and the prompt once."""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

from cloudlet.config.remote import PriceSpec
from cloudlet.domain import ChatMessage, GenerationRequest, ModelId, Usage
from cloudlet.domain.tokens import prompt_token_bound
from cloudlet.gateway.metering import within_bound
from cloudlet.gateway.pricing import price_of, worst_case
from cloudlet.gateway.targets import Target, TargetOptions
from tests.fakes import FakeChatEngine

ONE = GenerationRequest(model=ModelId("m"), messages=(ChatMessage("user", "Say hi"),), max_tokens=8)
THREE = dataclasses.replace(ONE, n=3)
PRICE = PriceSpec(input_per_mtok=Decimal(1), output_per_mtok=Decimal(2))


def test_completion_bound_is_max_tokens_for_every_choice() -> None:
    assert ONE.completion_bound(512) == 8
    assert THREE.completion_bound(512) == 24
    unbounded = dataclasses.replace(THREE, max_tokens=None)
    assert unbounded.completion_bound(100) == 300  # the model's default, three times


def test_the_cloud_reservation_covers_every_choice() -> None:
    bound = prompt_token_bound(THREE)
    assert worst_case(PRICE, THREE, 512) == price_of(PRICE).worst_case(bound, 24)
    assert worst_case(PRICE, THREE, 512).amount > worst_case(PRICE, ONE, 512).amount


def test_a_charge_is_capped_at_every_choice_not_at_one() -> None:
    target = Target("m", FakeChatEngine("m"), TargetOptions(price=PRICE), time.time)
    assert within_bound(Usage(5, 20), THREE, target) == Usage(5, 20)  # 3 choices: fits 24
    assert within_bound(Usage(5, 30), THREE, target) == Usage(5, 24)
    assert within_bound(Usage(5, 20), ONE, target) == Usage(5, 8)
